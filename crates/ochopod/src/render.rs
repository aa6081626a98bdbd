//! `ochopod validate` and `ochopod render`: check a declaration and its templates without
//! ZooKeeper.

use std::process::ExitCode;

use ochopod_core::{ClusterView, ControlPayload};

use crate::cli::{RenderArgs, ValidateArgs};

fn load(path: &std::path::Path) -> Result<ochopod_config::Settings, ExitCode> {
    let env = ochopod_config::process_env();
    let settings = ochopod_config::load(path, &env).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    for warning in &settings.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(settings)
}

pub fn validate(args: ValidateArgs) -> ExitCode {
    match load(&args.pod) {
        Ok(settings) => {
            print!("{}", ochopod_config::to_display_yaml(&settings));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn render(args: RenderArgs) -> ExitCode {
    let settings = match load(&args.pod) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(&args.cluster) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", args.cluster.display());
            return ExitCode::from(2);
        }
    };
    let mut payload = match ControlPayload::from_json(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}:{}:{}: not a cluster view: {e}", args.cluster.display(), e.line(), e.column());
            return ExitCode::from(2);
        }
    };
    if let Some(key) = args.key {
        payload.key = key;
    }
    let view = match ClusterView::from_payload(&payload) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}: {e}", args.cluster.display());
            return ExitCode::from(2);
        }
    };
    let env = ochopod_config::process_env();
    match ochopod_executor::render::render(&settings, view.clone(), &env) {
        Ok(r) => {
            println!("# pod {} (index {}, seq {}, size {})", view.key, view.index, view.seq, view.size);
            if settings.process.is_some() {
                println!("command: {}", shell_words::join(&r.argv));
                let declared = settings.process.as_ref().map(|p| &p.env);
                for (k, v) in r
                    .env
                    .iter()
                    .filter(|(k, _)| declared.is_some_and(|d| d.contains_key(*k)) || k.starts_with("OCHOPOD_"))
                {
                    println!("env: {k}={v}");
                }
            } else {
                println!("command: (sidecar: no process)");
            }
            for (path, content, _mode) in &r.files {
                println!("--- file {}", path.display());
                print!("{content}");
                if !content.ends_with('\n') {
                    println!();
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
