//! `/proc/<pid>/stat`: pid, parent and state of every process.
//!
//! The line reads `pid (comm) S ppid …`, and `comm` (the executable's name, chosen by whoever
//! started it) may hold spaces and parentheses: the fields after it are found from the *last*
//! `)`. This is the only parser of that format in the workspace, so the rule lives in one place.

/// What ochopod needs of a process's stat line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub ppid: i32,
    /// One letter: `R` running, `S` sleeping, `D` disk sleep, `T`/`t` stopped, `Z` zombie, …
    pub state: char,
}

impl Stat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parse the text of a `/proc/<pid>/stat` file; `None` if it does not look like one.
pub fn parse(text: &str) -> Option<Stat> {
    let open = text.find(" (")?;
    let pid = text[..open].trim().parse().ok()?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let mut fields = text[close + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { pid, ppid, state })
}

/// The stat of one process, `None` if it is gone (or `/proc` is not there).
pub fn read(pid: i32) -> Option<Stat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible in `/proc`. Processes that exit during the scan are left out.
pub fn table() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).filter_map(read).collect()
}

/// The process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    read(pid).is_some_and(|s| !s.is_zombie())
}

/// The pids of `parent`'s children that are zombies.
pub fn zombie_children(parent: i32) -> Vec<i32> {
    table().into_iter().filter(|s| s.ppid == parent && s.is_zombie()).map(|s| s.pid).collect()
}

/// Every process whose ancestry leads to `root` (children first, then grandchildren…), not
/// `root` itself.
pub fn descendants(root: i32) -> Vec<i32> {
    descendants_in(&table(), root)
}

/// [`descendants`] over a table already read.
pub fn descendants_in(table: &[Stat], root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(table.iter().filter(|s| s.ppid == parent && s.pid != parent).map(|s| s.pid));
        i += 1;
    }
    found.remove(0);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_spaces_and_parentheses_parse() {
        let s = parse("4242 (my (odd) name) Z 17 4242 4242 0 -1 4194560").unwrap();
        assert_eq!(s, Stat { pid: 4242, ppid: 17, state: 'Z' });
        assert!(s.is_zombie());
        assert_eq!(parse("1 () S 0 1 1").unwrap(), Stat { pid: 1, ppid: 0, state: 'S' });
    }

    #[test]
    fn garbage_is_none() {
        for bad in ["", "12", "12 (x", "x (sh) S 1", "12 (sh) S", "12 (sh) S notanumber", ") 12 (sh"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn our_own_process_is_alive_and_in_the_table() {
        let me = std::process::id() as i32;
        let s = read(me).expect("our own stat");
        assert_eq!(s.pid, me);
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert!(alive(me));
        assert!(table().iter().any(|s| s.pid == me));
        assert!(!zombie_children(1).contains(&me));
    }

    #[test]
    fn descendants_walk_the_tree_breadth_first() {
        let t = |pid, ppid| Stat { pid, ppid, state: 'S' };
        let table = [t(1, 0), t(10, 1), t(11, 10), t(12, 10), t(13, 11), t(20, 1), t(99, 5)];
        assert_eq!(descendants_in(&table, 10), vec![11, 12, 13]);
        assert_eq!(descendants_in(&table, 13), Vec::<i32>::new());
    }

    #[test]
    fn a_real_child_is_a_descendant_then_a_zombie() {
        let mut child = std::process::Command::new("sh").arg("-c").arg("exit 0").spawn().unwrap();
        let pid = child.id() as i32;
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !zombie_children(me).contains(&pid) {
            assert!(std::time::Instant::now() < deadline, "the exited child never showed as a zombie");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(descendants(me).contains(&pid));
        assert!(!alive(pid));
        child.wait().unwrap();
        assert_eq!(read(pid), None);
    }
}
