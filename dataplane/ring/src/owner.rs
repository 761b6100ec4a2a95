//! Who owns a claim in a shared region, and whether that process still lives.
//!
//! A process that dies while registered as a reader (or as the writer)
//! leaves its claim behind; in back-pressure mode a dead gating reader would
//! stop the writer for good. Claims therefore record the owner's pid and its
//! start time (`/proc/<pid>/stat` field 22, so a reused pid is not mistaken
//! for the owner), and [`crate::Ring::reap_dead_owners`] frees claims whose
//! owner is gone. This assumes the processes share a pid namespace.

/// Identity of a process: pid plus start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u64,
    pub start: u64,
}

/// The calling process.
pub(crate) fn current() -> Owner {
    #[cfg(not(loom))]
    {
        static ME: std::sync::OnceLock<Owner> = std::sync::OnceLock::new();
        *ME.get_or_init(|| {
            let pid = u64::from(std::process::id());
            Owner {
                pid,
                start: start_time(pid).unwrap_or(0),
            }
        })
    }
    #[cfg(loom)]
    {
        Owner {
            pid: u64::from(std::process::id()),
            start: 0,
        }
    }
}

/// Start time of `pid` from procfs, if it exists and parses.
#[cfg(not(loom))]
fn start_time(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of `/proc/<pid>/stat`. Field 2 (`comm`) is parenthesised and may
/// contain spaces and parentheses, so count from the last `)`: the field
/// after it is field 3, so field 22 is the 20th.
#[cfg(not(loom))]
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// True only if `owner` is known to be gone: its `/proc` entry is missing,
/// or the pid now belongs to a process with a different start time. Any
/// doubt (unreadable procfs, unknown pid 0) answers false.
#[cfg(not(loom))]
pub(crate) fn is_dead(owner: Owner) -> bool {
    if owner.pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{}/stat", owner.pid)) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(stat) => match parse_start_time(&stat) {
            Some(start) => owner.start != 0 && start != owner.start,
            None => false,
        },
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_despite_odd_comm() {
        let stat =
            "1234 (a) b) (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("1234 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn current_process_is_alive_and_a_missing_pid_is_dead() {
        let me = current();
        assert_eq!(me.pid, u64::from(std::process::id()));
        assert_ne!(me.start, 0);
        assert!(!is_dead(me));
        // Same pid, other start time: a reused pid, so the owner is gone.
        assert!(is_dead(Owner {
            pid: me.pid,
            start: me.start + 1
        }));
        // pid_max is at most 2^22 on Linux.
        assert!(is_dead(Owner {
            pid: (1 << 22) + 1,
            start: 1
        }));
        assert!(!is_dead(Owner { pid: 0, start: 0 }));
    }
}
