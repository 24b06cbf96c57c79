//! systemd's notification protocol (sd_notify(3)): one datagram per message to the Unix socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Without the
//! variable (not started by systemd) every call is a no-op. Messages used: `READY=1` (models
//! and backend verified), `STATUS=…` (per job; never patient data), `WATCHDOG=1` (at half of
//! `$WATCHDOG_USEC`), `STOPPING=1`.

use std::time::Duration;

pub struct Notifier {
    #[cfg(unix)]
    target: Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::SocketAddr,
    )>,
}

impl Notifier {
    /// From the environment; a malformed `$NOTIFY_SOCKET` is logged and ignored.
    pub fn from_env() -> Self {
        #[cfg(unix)]
        {
            let target = std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty())
                .and_then(|s| match connect(&s) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "NOTIFY_SOCKET unusable; no systemd notifications");
                        None
                    }
                });
            Notifier { target }
        }
        #[cfg(not(unix))]
        Notifier {}
    }

    /// Sends `state` (e.g. `READY=1`); failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        #[cfg(unix)]
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                tracing::warn!(error = %e, "sd_notify failed");
            }
        }
        #[cfg(not(unix))]
        let _ = state;
    }

    /// The watchdog ping interval: half of `$WATCHDOG_USEC` when it is set for this process.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Some(pid) = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        {
            if pid != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

#[cfg(unix)]
fn connect(
    name: &str,
) -> std::io::Result<(
    std::os::unix::net::UnixDatagram,
    std::os::unix::net::SocketAddr,
)> {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = abstract_name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    } else {
        SocketAddr::from_pathname(name)?
    };
    let sock = UnixDatagram::unbound()?;
    // A notification must never stall the daemon (a full receive queue would block a send).
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_as_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let (sock, addr) = connect(path.to_str().unwrap()).unwrap();
        let n = Notifier {
            target: Some((sock, addr)),
        };
        n.notify("READY=1");
        n.notify("STATUS=idle");
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"STATUS=idle");
    }
}
