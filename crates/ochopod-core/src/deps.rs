//! `depends_on` entries and the globs that tools and dependencies match cluster names with.
//!
//! An entry is relative to the pod's namespace (`zookeeper` → `<ns>.zookeeper`), absolute
//! (`/other-ns.kafka` → `other-ns.kafka`), or a glob in either form (`web-*`, `/svc.db.*`), which
//! matches the children of `/ochopod/clusters` (the pod's own cluster excluded); the pods of every
//! match are merged under the entry string as written.

/// A resolved `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependency {
    /// One cluster, by its `<namespace>.<cluster>` name.
    Exact { entry: String, cluster: String },
    /// Every cluster whose name matches `pattern`, except `own`.
    Glob { entry: String, pattern: String, own: String },
}

impl Dependency {
    pub fn resolve(entry: &str, namespace: &str, own_cluster: &str) -> Self {
        let name = match entry.strip_prefix('/') {
            Some(absolute) => absolute.to_string(),
            None => format!("{namespace}.{entry}"),
        };
        if is_glob(&name) {
            Dependency::Glob { entry: entry.to_string(), pattern: name, own: format!("{namespace}.{own_cluster}") }
        } else {
            Dependency::Exact { entry: entry.to_string(), cluster: name }
        }
    }

    /// The entry as written, the key the pods are reported under.
    pub fn entry(&self) -> &str {
        match self {
            Dependency::Exact { entry, .. } | Dependency::Glob { entry, .. } => entry,
        }
    }

    /// Which clusters, among the names listed under `/ochopod/clusters`, this entry covers.
    pub fn matching<'a>(&self, clusters: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        match self {
            Dependency::Exact { cluster, .. } => {
                clusters.into_iter().filter(|c| c == cluster).map(str::to_string).collect()
            }
            Dependency::Glob { pattern, own, .. } => {
                clusters.into_iter().filter(|c| c != own && glob_match(pattern, c)).map(str::to_string).collect()
            }
        }
    }
}

pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// fnmatch-style matching of a whole name: `*` any run, `?` one character, `[abc]`/`[a-z]`/`[!a]`
/// one character of a set. Like Python's `fnmatch`, `*` also matches dots.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches_from(&p, &n)
}

fn matches_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, name index it absorbed to).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(&p[pi..], n[ni]) {
                        if matched {
                            pi += next;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class at the start of `p` (`[...]`). Returns whether it matched and the
/// class's length, or `None` when the bracket is not closed (then it is a literal `[`).
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((matched != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_resolve_relative_absolute_and_glob() {
        assert_eq!(
            Dependency::resolve("zookeeper", "demo", "kafka"),
            Dependency::Exact { entry: "zookeeper".into(), cluster: "demo.zookeeper".into() }
        );
        assert_eq!(
            Dependency::resolve("/other.zk", "demo", "kafka"),
            Dependency::Exact { entry: "/other.zk".into(), cluster: "other.zk".into() }
        );
        let g = Dependency::resolve("web-*", "demo", "web-a");
        assert_eq!(g.matching(["demo.web-a", "demo.web-b", "demo.db", "x.web-c"]), vec!["demo.web-b"]);
        let abs = Dependency::resolve("/svc.db.*", "demo", "kafka");
        assert_eq!(abs.matching(["svc.db.main", "svc.db.replica", "svc.web"]), vec!["svc.db.main", "svc.db.replica"]);
        assert_eq!(abs.entry(), "/svc.db.*");
    }

    #[test]
    fn globs_behave_like_fnmatch() {
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("zoo*per", "zookeeper"));
        assert!(glob_match("demo.?k", "demo.zk"));
        assert!(glob_match("d[a-f]mo.*", "demo.x"));
        assert!(!glob_match("d[!e]mo.*", "demo.x"));
        assert!(!glob_match("zoo*per", "zookeepers"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("[x", "[x"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }
}
