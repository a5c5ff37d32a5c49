//! What `fulcrum run` would refuse at start beyond the file itself, checked by `fulcrum check`
//! without changing anything: the access log file (run opens it for append, creating it) and
//! the upgrade socket's directory. Listeners are the exception: check does not bind them.
//!
//! Each check reports what run would: the access log's error is the very message of
//! [`crate::access_log::open_error`], at the place `access_log` was written.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::runtime::{AccessLogTarget, Config};
use super::ConfigError;

/// Every problem `run` would meet at start with `config` (loaded from `file`) that loading
/// does not look for. Creates, truncates and binds nothing.
pub fn preflight(config: &Config, file: &Path) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let AccessLogTarget::File(path) = &config.server.access_log {
        if let Err(e) = appendable(path) {
            let e = io::Error::new(
                e.kind(),
                format!("cannot open access log {}: {e}", path.display()),
            );
            let place = &config.places;
            errors.push(crate::access_log::open_error(place, Some(file), &e));
        }
    }
    // Only a socket path the file names: the default one's directory is run's to provide.
    if let Some(sock) = &config.server.upgrade_sock {
        let dir = sock.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(Err(e)) = dir.map(directory) {
            let dir = dir
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default();
            let message = format!("the directory of upgrade_sock \"{}\", {dir}, cannot hold it ({e}); create it (with systemd: RuntimeDirectory=fulcrum and upgrade_sock = \"/run/fulcrum/upgrade.sock\")", sock.display());
            errors.push(
                config
                    .places
                    .error(Some(file), "server.upgrade_sock", message),
            );
        }
    }
    errors
}

/// Whether `path` could be opened for append, created if missing, as run opens the access log:
/// an existing file is opened for append (never truncated; a FIFO without a reader is not
/// waited for), a missing one needs a directory that exists and that someone may write to.
fn appendable(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(_) => OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map(drop),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            directory(dir.unwrap_or(Path::new(".")))
        }
        Err(e) => Err(e),
    }
}

/// Whether `dir` is a directory this process may create a file in. Without asking the kernel
/// for the process's groups (which needs `unsafe`), write permission is judged by the mode
/// bits: the owner's when the directory is this process's user's, anyone's otherwise; root
/// may write anywhere.
fn directory(dir: &Path) -> io::Result<()> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    // /proc/self belongs to the process's effective user.
    let me = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let writable = match me {
        Some(0) | None => true,
        Some(uid) if uid == meta.uid() => meta.mode() & 0o200 != 0,
        Some(_) => meta.mode() & 0o022 != 0,
    };
    if writable {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EACCES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_log_is_checked_without_being_created() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        assert!(appendable(&log).is_ok());
        assert!(!log.exists(), "the check created the file");
        let missing = dir.path().join("no-such-dir/access.log");
        let e = appendable(&missing).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::write(&log, "kept").unwrap();
        assert!(appendable(&log).is_ok());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "kept");
        // A directory where the file should be.
        assert!(appendable(dir.path()).is_err());
    }
}
