//! The control process: interfaces, classifier, multicast membership, Unix-socket API.
//!
//! `xpgmd` (src/bin/xpgmd.rs) owns the privileged state; `xpgmctl`
//! (src/bin/xpgmctl.rs) and data-plane processes talk to it over a Unix
//! socket with newline-delimited JSON (see `docs/control-api.md`).

#![deny(unsafe_code)]

pub mod client;
pub mod daemon;
pub mod mcast;
pub mod metrics;
pub mod netlink;
pub mod server;
pub mod sys;
pub mod top;

use std::path::{Path, PathBuf};

/// Environment variable naming the control socket.
pub const SOCKET_ENV: &str = "XPGM_SOCKET";
/// Control socket path used when neither `--socket` nor `XPGM_SOCKET` is given.
pub const DEFAULT_SOCKET: &str = "/run/xpgm/xpgmd.sock";

/// The one rule for finding xpgmd's socket, shared by xpgmd, xpgmctl and
/// xpgm: the `--socket` argument, else `$XPGM_SOCKET` (if non-empty), else
/// [`DEFAULT_SOCKET`].
pub fn socket_path(cli: Option<&Path>) -> PathBuf {
    socket_path_from(cli, std::env::var_os(SOCKET_ENV))
}

/// [`socket_path`] with the environment value passed in (testable).
pub fn socket_path_from(cli: Option<&Path>, env: Option<std::ffi::OsString>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match env {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_rule() {
        let cli = Path::new("/tmp/a.sock");
        assert_eq!(socket_path_from(Some(cli), Some("/tmp/b".into())), cli);
        assert_eq!(
            socket_path_from(None, Some("/tmp/b".into())),
            PathBuf::from("/tmp/b")
        );
        assert_eq!(
            socket_path_from(None, Some("".into())),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(socket_path_from(None, None), PathBuf::from(DEFAULT_SOCKET));
    }
}
