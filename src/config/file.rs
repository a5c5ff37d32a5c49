//! Reading the config file: the one way every read of it goes (start, `check`, every reload),
//! and the certificate, key and CA files it names.
//!
//! Only a regular file is read, at most a limit of bytes, and nothing a path may point at
//! instead (a FIFO, a device such as `/dev/zero`, a directory, a socket) can block the reader
//! or fill memory:
//!
//! 1. `stat` the path (following links): anything but a regular file is refused, naming what it
//!    is;
//! 2. open it with `O_NONBLOCK`, so that a FIFO swapped in between the two steps cannot block
//!    the open, and `fstat` the opened file again;
//! 3. read at most `limit + 1` bytes: more than `limit` is refused, naming the limit and how to
//!    raise it.
//!
//! [`Reader`] runs that on a thread of its own and waits at most [`READ_TIMEOUT`]: a read stuck
//! in the kernel (a hung network file system) is abandoned and reported, and the next read starts
//! afresh. At most [`MAX_STUCK_READS`] abandoned reads may be outstanding; past that a read is
//! refused at once, so stuck reads cannot pile up threads.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::ConfigError;

/// How long a read of the config file may take before it is abandoned.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Abandoned reads that may still be stuck at once; past it, a read is refused at once.
pub const MAX_STUCK_READS: usize = 4;

/// What a path points at that is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// Anything else that is not a regular file.
    Other,
}

impl FileKind {
    /// What `file_type` is, or `None` for a regular file.
    fn of(file_type: std::fs::FileType) -> Option<FileKind> {
        Some(if file_type.is_file() {
            return None;
        } else if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_fifo() {
            FileKind::Fifo
        } else if file_type.is_socket() {
            FileKind::Socket
        } else if file_type.is_char_device() {
            FileKind::CharDevice
        } else if file_type.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Other
        })
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Other => "not a regular file",
        })
    }
}

/// The most bytes a read takes, and who sets it (for the hint on how to raise it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The config file at `fulcrum run` and `fulcrum check`: `--max-config-size` (default
    /// 64 MiB).
    Flag(u64),
    /// The config file at a reload: `[server].max_config_size` of the config running now.
    Running(u64),
    /// A certificate, key or CA file the config names: a fixed limit.
    Pem(u64),
}

impl Limit {
    pub fn bytes(self) -> u64 {
        match self {
            Limit::Flag(n) | Limit::Running(n) | Limit::Pem(n) => n,
        }
    }
}

/// Why a file was not read. The text says what is wrong with "it", the file: the caller names
/// the file ([`ReadError::at`] for the config file).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(FileKind),
    #[error("it is larger than {limit}; {}", raise(*.limit))]
    TooLarge { limit: Limit },
    #[error("it is not UTF-8 text (byte {0} is not)")]
    NotUtf8(usize),
    #[error("reading it took longer than {0:?}: abandoned (the next reload reads it again)")]
    TimedOut(Duration),
    #[error("{0} earlier reads of it are stuck (each abandoned after its timeout); not reading it again until one ends")]
    Stuck(usize),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.bytes();
        match n {
            _ if n % (1 << 20) == 0 => write!(f, "{} MiB", n >> 20),
            _ if n % (1 << 10) == 0 => write!(f, "{} KiB", n >> 10),
            _ => write!(f, "{n} bytes"),
        }
    }
}

fn raise(limit: Limit) -> &'static str {
    match limit {
        Limit::Flag(_) => "raise it with --max-config-size (and server.max_config_size, which holds reloads of it)",
        Limit::Running(_) => "the limit is server.max_config_size of the config running now: raise it there first, or restart with --max-config-size",
        Limit::Pem(_) => "the most a certificate, key or CA file may be",
    }
}

impl ReadError {
    /// The error as a problem of the config file at `path`.
    pub fn at(&self, path: &Path) -> ConfigError {
        let field = match self {
            ReadError::TooLarge {
                limit: Limit::Running(_),
            } => "server.max_config_size",
            _ => "",
        };
        let message = format!("cannot read config file: {self}");
        ConfigError::at(path, "", None, field, message).kind(super::Kind::Unreadable)
    }
}

/// Reads the regular file at `path`, at most `limit` bytes of UTF-8 text. Blocking, but never on
/// what the path points at: see the module doc.
pub fn read(path: &Path, limit: Limit) -> Result<String, ReadError> {
    let bytes = read_bytes(path, limit)?;
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
}

/// Reads the regular file at `path`, at most `limit` bytes. Blocking, but never on what the path
/// points at: see the module doc.
pub fn read_bytes(path: &Path, limit: Limit) -> Result<Vec<u8>, ReadError> {
    let kind = |m: &std::fs::Metadata| FileKind::of(m.file_type());
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    if let Some(k) = kind(&meta) {
        return Err(ReadError::NotRegular(k));
    }
    // O_NONBLOCK: opening a FIFO put there since the stat returns at once instead of waiting
    // for a writer (it has no effect on a regular file). O_NOCTTY: a terminal device put there
    // does not become the process's controlling terminal.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if let Some(k) = kind(&meta) {
        return Err(ReadError::NotRegular(k));
    }
    let cap = meta.len().min(limit.bytes()).saturating_add(1);
    let mut bytes = Vec::with_capacity(usize::try_from(cap).unwrap_or(usize::MAX));
    read_at_most(file, limit.bytes(), &mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit.bytes() {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// Reads `file` into `bytes` until its end or until `limit + 1` bytes.
fn read_at_most(file: File, limit: u64, bytes: &mut Vec<u8>) -> std::io::Result<usize> {
    file.take(limit.saturating_add(1)).read_to_end(bytes)
}

/// Reads the config file on a thread of its own, abandoning a read stuck past a timeout (see the
/// module doc). Cheap to clone; clones share the count of reads outstanding.
#[derive(Debug, Clone)]
pub struct Reader {
    timeout: Duration,
    /// Reads started and not ended, stuck ones included.
    outstanding: Arc<AtomicUsize>,
}

impl Default for Reader {
    fn default() -> Reader {
        Reader::new(READ_TIMEOUT)
    }
}

impl Reader {
    pub fn new(timeout: Duration) -> Reader {
        Reader {
            timeout,
            outstanding: Arc::default(),
        }
    }

    /// [`read`] of `path`, waiting at most the timeout. Blocking (call it off the async
    /// workers); reads through one reader are expected one at a time, so one still outstanding
    /// when the next starts is a stuck one.
    pub fn read(&self, path: &Path, limit: Limit) -> Result<String, ReadError> {
        let path: PathBuf = path.to_path_buf();
        self.run(move || read(&path, limit))
    }

    /// Runs `read` on a new thread; its result, or an error when it is not back in time.
    fn run(
        &self,
        read: impl FnOnce() -> Result<String, ReadError> + Send + 'static,
    ) -> Result<String, ReadError> {
        let stuck = self.outstanding.load(Ordering::Acquire);
        if stuck >= MAX_STUCK_READS {
            return Err(ReadError::Stuck(stuck));
        }
        /// Counts the read out when its thread ends, however it ends.
        struct Outstanding(Arc<AtomicUsize>);
        impl Drop for Outstanding {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        let counted = Outstanding(Arc::clone(&self.outstanding));
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("fulcrum-config-read".into())
            .spawn(move || {
                let _counted = counted;
                // The receiver is gone when the read was abandoned: nobody wants the result.
                let _ = tx.send(read());
            });
        if let Err(e) = spawned {
            return Err(ReadError::Io(e));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ReadError::TimedOut(self.timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ReadError::Io(std::io::Error::other(
                "the reading thread ended without a result",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit::Running(16);

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "x = 1\n").unwrap();
        assert_eq!(read(&path, LIMIT).unwrap(), "x = 1\n");
        // Exactly the limit is still accepted.
        std::fs::write(&path, "a".repeat(16)).unwrap();
        assert_eq!(read(&path, LIMIT).unwrap().len(), 16);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_the_limit_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "a".repeat(17)).unwrap();
        let e = read(&path, LIMIT).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit } if limit == LIMIT));
        let shown = e.at(&path).to_string();
        assert!(shown.contains("it is larger than 16 bytes"), "{shown}");
        assert!(shown.contains("server.max_config_size"), "{shown}");
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(Path::new("/dev/zero"), LIMIT),
            Err(ReadError::NotRegular(FileKind::CharDevice))
        ));
        assert!(matches!(
            read(dir.path(), LIMIT),
            Err(ReadError::NotRegular(FileKind::Directory))
        ));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Blocking here (no writer) would hang the test: it is refused instead.
        assert!(matches!(
            read(&fifo, LIMIT),
            Err(ReadError::NotRegular(FileKind::Fifo))
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read(&link, LIMIT).unwrap_err();
        assert_eq!(
            e.at(&link).to_string(),
            format!(
                "{}: cannot read config file: it is a character device, not a regular file",
                link.display()
            )
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, b"ab\xffcd").unwrap();
        assert!(matches!(read(&path, LIMIT), Err(ReadError::NotUtf8(2))));
    }

    #[test]
    fn a_stuck_read_is_abandoned_and_the_next_one_reads_again() {
        // Long enough that a read that is not stuck finishes within it on a loaded machine.
        let reader = Reader::new(Duration::from_millis(500));
        // A read that stays stuck until the test lets it go.
        let (release, stuck) = mpsc::channel::<()>();
        let e = reader
            .run(move || {
                let _ = stuck.recv();
                Ok(String::new())
            })
            .unwrap_err();
        assert!(matches!(e, ReadError::TimedOut(_)), "{e}");
        // The next read does not wait for the stuck one.
        assert_eq!(reader.run(|| Ok("next".into())).unwrap(), "next");
        // Too many stuck at once: refused without starting another thread.
        let mut held = vec![release];
        for _ in 1..MAX_STUCK_READS {
            let (release, stuck) = mpsc::channel::<()>();
            held.push(release);
            let r = reader.run(move || {
                let _ = stuck.recv();
                Ok(String::new())
            });
            assert!(matches!(r, Err(ReadError::TimedOut(_))));
        }
        assert!(matches!(
            reader.run(|| Ok(String::new())),
            Err(ReadError::Stuck(n)) if n == MAX_STUCK_READS
        ));
        // Once the stuck reads end, reading works again.
        drop(held);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while reader.outstanding.load(Ordering::Acquire) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "stuck reads never ended"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(reader.run(|| Ok("again".into())).unwrap(), "again");
    }
}
