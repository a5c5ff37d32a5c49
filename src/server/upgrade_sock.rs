//! Where the graceful upgrade's Unix socket lives when `[server] upgrade_sock` is not set: in a
//! runtime directory only this user can write, never a fixed name in `/tmp` that any local user
//! could create first. In order: `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), else
//! `/run/fulcrum/`, else `$XDG_RUNTIME_DIR/fulcrum/`, else `/tmp/fulcrum-UID/`. A directory
//! fulcrum makes is made 0700; one it finds, `$RUNTIME_DIRECTORY` included, must be a directory
//! (not a link) owned by this user that no one else can read, write or enter. With none usable,
//! there is no default: graceful upgrade is off (never a fixed name in a shared directory). The
//! old and the new process resolve the same path from the same environment.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The socket's file name in the runtime directory.
pub const SOCKET_NAME: &str = "upgrade.sock";

/// The default upgrade socket for this process's environment; `Err` says why no candidate
/// directory could be used.
pub fn default_path() -> Result<PathBuf, String> {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot tell this process's user from /proc/self: {e}"))?;
    let candidates = Candidates {
        runtime_directory: std::env::var_os("RUNTIME_DIRECTORY"),
        run: PathBuf::from("/run/fulcrum"),
        xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR"),
        tmp: std::env::temp_dir(),
    };
    candidates.resolve(uid).map(|dir| dir.join(SOCKET_NAME))
}

struct Candidates {
    runtime_directory: Option<OsString>,
    run: PathBuf,
    xdg_runtime_dir: Option<OsString>,
    tmp: PathBuf,
}

impl Candidates {
    /// The first usable directory for user `uid`.
    fn resolve(&self, uid: u32) -> Result<PathBuf, String> {
        let mut tried = Vec::new();
        // systemd made it for this service (several may be listed, colon-separated); it is
        // checked like the others (systemd's default RuntimeDirectoryMode, 0755, is refused).
        if let Some(dirs) = self.runtime_directory.as_ref().and_then(|d| d.to_str()) {
            if let Some(first) = dirs.split(':').find(|d| !d.is_empty()) {
                let dir = PathBuf::from(first);
                match private_dir(&dir, uid) {
                    Ok(()) => return Ok(dir),
                    Err(why) => tried.push(format!(
                        "$RUNTIME_DIRECTORY {}: {why} (set RuntimeDirectoryMode=0700)",
                        dir.display()
                    )),
                }
            }
        }
        let mut dirs = vec![self.run.clone()];
        if let Some(xdg) = self.xdg_runtime_dir.as_ref().filter(|d| !d.is_empty()) {
            dirs.push(Path::new(xdg).join("fulcrum"));
        }
        dirs.push(self.tmp.join(format!("fulcrum-{uid}")));
        for dir in dirs {
            match private_dir(&dir, uid) {
                Ok(()) => return Ok(dir),
                Err(why) => tried.push(format!("{}: {why}", dir.display())),
            }
        }
        Err(format!(
            "no runtime directory for the upgrade socket ({}); set [server] upgrade_sock",
            tried.join("; ")
        ))
    }
}

/// Makes `dir` (0700) if it is missing, and checks that it is a directory owned by `uid` that
/// no one else can read, write or enter.
fn private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory".to_owned());
    }
    if meta.uid() != uid {
        return Err(format!("owned by uid {}, not {uid}", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "others can reach it (mode {:o}; it must be 0700)",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Makes the socket at `path`, once it exists, readable and writable by this user only. pingora
/// makes the socket while it waits for the old process; this watches for it from a thread for
/// at most `limit`.
pub fn restrict_when_made(path: PathBuf, limit: std::time::Duration) {
    use std::os::unix::fs::PermissionsExt;
    let spawned = std::thread::Builder::new()
        .name("upgrade-sock".to_owned())
        .spawn(move || {
            let deadline = std::time::Instant::now() + limit;
            while std::time::Instant::now() < deadline {
                if std::fs::symlink_metadata(&path).is_ok() {
                    let only_us = std::fs::Permissions::from_mode(0o600);
                    if let Err(e) = std::fs::set_permissions(&path, only_us) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot make the upgrade socket 0600");
                    }
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch the upgrade socket to make it 0600");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn uid() -> u32 {
        std::fs::metadata("/proc/self").unwrap().uid()
    }

    #[test]
    fn systemd_runtime_directory_comes_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let c = Candidates {
            runtime_directory: Some(format!("{}:/run/y", dir.display()).into()),
            run: tmp.path().join("run"),
            xdg_runtime_dir: None,
            tmp: tmp.path().to_path_buf(),
        };
        assert_eq!(c.resolve(uid()).unwrap(), dir);
        // systemd's default mode, 0755: refused, and the next candidate is used.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let next = c.resolve(uid()).unwrap();
        assert_eq!(next, tmp.path().join("run"));
    }

    #[test]
    fn a_squatted_or_open_directory_is_passed_over() {
        let tmp = tempfile::tempdir().unwrap();
        // /run/fulcrum cannot be made (its parent is a file); XDG's is open to all.
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let xdg = tmp.path().join("xdg");
        std::fs::create_dir_all(xdg.join("fulcrum")).unwrap();
        std::fs::set_permissions(xdg.join("fulcrum"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let c = Candidates {
            runtime_directory: None,
            run: tmp.path().join("file/fulcrum"),
            xdg_runtime_dir: Some(xdg.into()),
            tmp: tmp.path().to_path_buf(),
        };
        let uid = uid();
        let dir = c.resolve(uid).unwrap();
        assert_eq!(dir, tmp.path().join(format!("fulcrum-{uid}")));
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Owned by someone else: refused, and the error names each directory tried.
        let err = c.resolve(uid + 1).unwrap_err();
        assert!(err.contains("owned by uid"), "{err}");
        let open = private_dir(&tmp.path().join("xdg/fulcrum"), uid).unwrap_err();
        assert!(open.contains("others can reach it (mode 777"), "{open}");
    }
}
