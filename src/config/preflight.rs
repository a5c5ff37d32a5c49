//! What `fulcrum run` would meet at start beyond the file itself, checked by `fulcrum check`
//! without changing anything: the access log file (run opens it for append, creating it) and
//! the upgrade socket's directory. Listeners are the exception: check does not bind them.
//!
//! The kernel is asked (`faccessat` with the effective user and groups), not the mode bits
//! read: a read-only filesystem, groups, ACLs and root are judged as `open` would judge them.
//! An existing file is never opened (a reader on a FIFO would see its writer go away).
//!
//! The access log's error is the very message of [`crate::access_log::open_error`], at the
//! place `access_log` was written; run refuses to start with it. An access log on a FIFO is a
//! warning (run waits for a reader), and so is an `upgrade_sock` whose directory cannot hold it:
//! run starts, and only a graceful upgrade (`run --upgrade`, SIGQUIT) would fail.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, AT_FDCWD};
use nix::unistd::{faccessat, AccessFlags};

use super::runtime::{AccessLogTarget, Config};
use super::ConfigError;

/// What [`preflight`] found: errors run would stop at, warnings about what it would not.
#[derive(Debug, Default)]
pub struct Preflight {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// Every problem `run` would meet at start with `config` (loaded from `file`) that loading
/// does not look for. Opens, creates, truncates and binds nothing.
pub fn preflight(config: &Config, file: &Path) -> Preflight {
    let mut found = Preflight::default();
    if let AccessLogTarget::File(path) = &config.server.access_log {
        match appendable(path) {
            Ok(Existing::Fifo) => {
                let message = format!("{} is a FIFO: run waits at start, serving nothing, until a reader opens it (start the reader first)", path.display());
                let place = &config.places;
                found.warnings.push(
                    place
                        .error(Some(file), "server.access_log", message)
                        .warning(),
                );
            }
            Ok(Existing::File | Existing::No) => {}
            Err(e) => {
                let e = io::Error::new(
                    e.kind(),
                    format!("cannot open access log {}: {e}", path.display()),
                );
                let place = &config.places;
                found
                    .errors
                    .push(crate::access_log::open_error(place, Some(file), &e));
            }
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
            let message = format!("a graceful upgrade (run --upgrade, SIGQUIT) would fail: the directory of upgrade_sock \"{}\", {dir}, cannot hold it ({e}); create it (with systemd: RuntimeDirectory=fulcrum and upgrade_sock = \"/run/fulcrum/upgrade.sock\")", sock.display());
            found.warnings.push(
                config
                    .places
                    .error(Some(file), "server.upgrade_sock", message)
                    .warning(),
            );
        }
    }
    found
}

/// What is at an access log's path.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    /// Nothing yet: run creates the file.
    No,
    /// A file (or a device) run appends to.
    File,
    /// A named pipe: run's open waits for a reader.
    Fifo,
}

/// Whether `path` could be opened for append, created if missing, as run opens the access log,
/// without opening it: an existing file must be writable; a missing one needs a directory
/// that exists and that this process may create a file in. A symbolic link is followed, and
/// a dangling one is judged by its target, which run's open would create.
fn appendable(path: &Path) -> io::Result<Existing> {
    let mut path = path.to_path_buf();
    // As the kernel does, a bounded number of links.
    for _ in 0..40 {
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
            Ok(meta) => {
                access(&path, AccessFlags::W_OK)?;
                return Ok(if meta.file_type().is_fifo() {
                    Existing::Fifo
                } else {
                    Existing::File
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::symlink_metadata(&path) {
                    // A dangling link: its target is what open creates.
                    Ok(link) if link.file_type().is_symlink() => {
                        path = link_target(&path)?;
                        continue;
                    }
                    _ => {}
                }
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                return directory(dir.unwrap_or(Path::new("."))).map(|()| Existing::No);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// The path a symbolic link at `link` points to, relative to the link's directory.
fn link_target(link: &Path) -> io::Result<PathBuf> {
    let target = fs::read_link(link)?;
    Ok(match link.parent() {
        Some(dir) if target.is_relative() => dir.join(target),
        _ => target,
    })
}

/// Whether `dir` is a directory this process may create a file in.
fn directory(dir: &Path) -> io::Result<()> {
    if !fs::metadata(dir)?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
}

/// The kernel's answer for `path` and `mode`, for the effective user and groups.
fn access(path: &Path, mode: AccessFlags) -> io::Result<()> {
    faccessat(AT_FDCWD, path, mode, AtFlags::AT_EACCESS).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_log_is_checked_without_being_created() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        assert_eq!(appendable(&log).unwrap(), Existing::No);
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
