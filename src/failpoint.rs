//! Failpoints: named places where tests make the real binary fail the way the field does — a
//! full disk, or a crash (kill -9) between two steps.
//!
//! `NEPHROD_FAILPOINTS="name=action,…"` with action `crash` (abort the process at once: no
//! destructors, no flushing, like SIGKILL), `crash-after:N` (pass N times, then crash) or
//! `enospc:N` (the first N hits fail with "No space left on device"). Unset, every
//! [`hit`] is a no-op; nothing else reads the variable. Names are listed where they are hit
//! (`grep -rn 'failpoint::hit' src`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

#[derive(Debug)]
enum Action {
    Crash { after: u64 },
    NoSpace { times: u64 },
}

struct Point {
    action: Action,
    hits: AtomicU64,
}

fn points() -> &'static BTreeMap<String, Point> {
    static POINTS: OnceLock<BTreeMap<String, Point>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let spec = std::env::var("NEPHROD_FAILPOINTS").unwrap_or_default();
        parse(&spec)
    })
}

fn parse(spec: &str) -> BTreeMap<String, Point> {
    let mut out = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, action)) = item.split_once('=') else {
            continue;
        };
        let count = |s: &str| s.parse::<u64>().ok();
        let action = match action.split_once(':') {
            None if action == "crash" => Action::Crash { after: 0 },
            Some(("crash-after", n)) => match count(n) {
                Some(after) => Action::Crash { after },
                None => continue,
            },
            Some(("enospc", n)) => match count(n) {
                Some(times) => Action::NoSpace { times },
                None => continue,
            },
            _ => continue,
        };
        out.insert(
            name.to_string(),
            Point {
                action,
                hits: AtomicU64::new(0),
            },
        );
    }
    out
}

/// Passes, crashes or fails at failpoint `name` (see the module doc).
pub fn hit(name: &str) -> std::io::Result<()> {
    let Some(p) = points().get(name) else {
        return Ok(());
    };
    let n = p.hits.fetch_add(1, Ordering::SeqCst);
    match p.action {
        Action::Crash { after } if n >= after => {
            eprintln!("failpoint {name}: crash");
            std::process::abort();
        }
        Action::NoSpace { times } if n < times => Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("No space left on device (failpoint {name})"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_known_actions_only() {
        let p = parse("a=crash, b=enospc:2,c=crash-after:3,d=bogus,e=enospc:x,f");
        let names: Vec<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(matches!(p["b"].action, Action::NoSpace { times: 2 }));
        assert!(matches!(p["c"].action, Action::Crash { after: 3 }));
    }

    #[test]
    fn unset_points_pass() {
        assert!(hit("no-such-point").is_ok());
    }
}
