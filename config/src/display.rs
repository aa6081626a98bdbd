//! The validated settings as YAML for `ochopod validate`: the shape of [`Settings`], with
//! durations spelled as in the declaration (`1m30s`, not `{secs: 90, nanos: 0}`), modes in octal,
//! and nothing secret: neither the token nor the ZooKeeper credentials.

use serde_yaml::{Mapping, Value};

use crate::duration::format_duration;
use crate::settings::*;

pub fn to_display_yaml(s: &Settings) -> String {
    let root = map([
        ("source", s.source.display().to_string().into()),
        ("cluster", s.cluster.clone().into()),
        ("namespace", s.namespace.clone().into()),
        ("port", s.port.into()),
        ("ports", Value::Mapping(s.ports.iter().map(|(c, h)| (Value::from(*c), Value::from(*h))).collect())),
        (
            "zk",
            map([
                ("hosts", s.zk.target.hosts.clone().into()),
                ("chroot", opt(s.zk.target.chroot.clone())),
                // Whether there are credentials, never what they are.
                ("auth", s.zk.target.digest.as_ref().map_or(Value::Null, |_| "digest (hidden)".into())),
                ("session_timeout", dur(s.zk.session_timeout)),
            ]),
        ),
        ("coordination", coordination(&s.coordination)),
        ("binding", serde_yaml::to_value(s.binding).unwrap_or(Value::Null)),
        ("debug", s.debug.into()),
        ("application", s.application.clone().into()),
        ("task", s.task.clone().into()),
        ("model", model(&s.model)),
        ("process", s.process.as_ref().map_or(Value::Null, process)),
        ("files", Value::Sequence(s.files.iter().map(file).collect())),
        ("hooks", hooks(&s.hooks)),
        ("control", control(&s.control)),
    ]);
    serde_yaml::to_string(&root).unwrap_or_else(|e| format!("# cannot show the settings: {e}\n"))
}

/// `zookeeper` (the `zk` settings), or the etcd target as registered: hosts, prefix and TLS
/// files, whether there are credentials, never what they are.
fn coordination(c: &crate::Coordination) -> Value {
    match c {
        crate::Coordination::ZooKeeper => "zookeeper".into(),
        crate::Coordination::Etcd(e) => map([(
            "etcd",
            map([
                ("target", e.target.redacted().into()),
                ("auth", e.target.credentials.as_ref().map_or(Value::Null, |_| "user (hidden)".into())),
                ("lease_ttl", dur(e.lease_ttl)),
            ]),
        )]),
    }
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect::<Mapping>())
}

fn dur(d: std::time::Duration) -> Value {
    format_duration(d).into()
}

fn opt(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn model(m: &ModelSettings) -> Value {
    map([
        ("depends_on", Value::Sequence(m.depends_on.iter().map(|d| d.as_str().into()).collect())),
        ("damper", dur(m.damper)),
        ("sequential", m.sequential.into()),
        ("min_size", (m.min_size as u64).into()),
        ("full_shutdown", m.full_shutdown.into()),
        ("grace", dur(m.grace)),
        (
            "probe",
            m.probe.as_ref().map_or(Value::Null, |p| {
                map([("command", p.command.clone().into()), ("every", dur(p.every)), ("timeout", dur(p.timeout))])
            }),
        ),
    ])
}

fn process(p: &ProcessSettings) -> Value {
    let sanity = p.sanity.as_ref().map_or(Value::Null, |s| {
        let (kind, value) = match &s.check {
            SanityCheck::Command(c) => ("command", c),
            SanityCheck::Http(u) => ("http", u),
            SanityCheck::Tcp(a) => ("tcp", a),
        };
        map([
            (kind, value.clone().into()),
            ("every", dur(s.every)),
            ("retries", s.retries.into()),
            ("timeout", dur(s.timeout)),
        ])
    });
    let r = &p.restart;
    map([
        ("command", p.command.clone().into()),
        ("shell", p.shell.into()),
        ("cwd", opt(p.cwd.as_ref().map(|c| c.display().to_string()))),
        (
            "env",
            Value::Mapping(p.env.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))).collect()),
        ),
        ("strict", p.strict.into()),
        ("start", p.start.into()),
        ("pipe_output", p.pipe_output.into()),
        ("grace", dur(p.grace)),
        ("soft", p.soft.into()),
        ("sanity", sanity),
        (
            "restart",
            map([
                ("when", serde_yaml::to_value(r.when).unwrap_or(Value::Null)),
                ("initial", dur(r.initial_delay)),
                ("max", dur(r.max_delay)),
                ("crashloop_after", r.crashloop_after.into()),
                ("reset_after", dur(r.reset_after)),
                ("give_up_after", r.give_up_after.into()),
            ]),
        ),
    ])
}

fn file(f: &FileTemplate) -> Value {
    map([
        ("path", f.path.display().to_string().into()),
        ("template", f.template.clone().into()),
        ("mode", opt(f.mode.map(|m| format!("{m:04o}")))),
    ])
}

fn hooks(h: &Hooks) -> Value {
    let one = |hook: &Option<Hook>| {
        hook.as_ref().map_or(Value::Null, |h| map([("command", h.command.clone().into()), ("timeout", dur(h.timeout))]))
    };
    map([
        ("initialize", one(&h.initialize)),
        ("can_configure", one(&h.can_configure)),
        ("configured", one(&h.configured)),
        ("signaled", one(&h.signaled)),
        ("tear_down", one(&h.tear_down)),
        ("finalize", one(&h.finalize)),
    ])
}

fn control(c: &ControlSettings) -> Value {
    map([
        ("token_source", opt(c.token_source.as_ref().map(ToString::to_string))),
        ("protect_reads", c.protect_reads.into()),
        (
            "tls",
            c.tls.as_ref().map_or(Value::Null, |t| {
                map([
                    ("cert", t.cert.display().to_string().into()),
                    ("key", t.key.display().to_string().into()),
                    ("ca", t.ca.as_ref().map_or(Value::Null, |c| c.display().to_string().into())),
                ])
            }),
        ),
        ("body_limit", (c.body_limit as u64).into()),
        ("log_lines", (c.log_lines as u64).into()),
    ])
}
