//! The config file a process runs on: where it is, the text read at start, that text prepared
//! (what the first DNS refresh resolves again) and who answers for its backend names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, Config, ConfigError, ConfigErrors, Note, Prepared, Resolve};

/// The config file the process started with. Made by [`Source::load`]; handed to
/// [`crate::server::run`] through `RunOptions::source`.
#[derive(Debug, Clone)]
pub struct Source {
    pub(crate) path: PathBuf,
    /// The text as read at start: a file event that finds it again reloads nothing.
    pub(crate) text: String,
    pub(crate) prepared: Arc<Prepared>,
    /// Answers for the backend names at start, and at every reload and DNS refresh.
    pub(crate) resolver: Arc<dyn Resolve>,
    /// The names the start's resolution warned about (their warnings are in the config
    /// [`Source::load`] returns, which whoever starts the process logs): a refresh warns about a
    /// name only when its state changes.
    pub(crate) notes: Vec<Note>,
}

/// Why [`Source::load`] could not load a config file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read (missing, not a regular file, too large, too slow).
    #[error("{0}")]
    Read(ConfigError),
    /// The file was read and is not a valid config: every problem found.
    #[error("invalid config:\n{0}")]
    Invalid(ConfigErrors),
}

impl Source {
    /// Reads the config file at `path` (a regular file of at most `max_size` bytes), prepares
    /// it and resolves its backend names with `resolver`: the config to start with, and the
    /// source a reload and a DNS refresh start from. Blocking (file IO, DNS). The config's
    /// `warnings` (names that did not resolve among them) are the caller's to log: later DNS
    /// refreshes warn about a name only when its state changes.
    pub fn load(
        path: &Path,
        max_size: u64,
        resolver: Arc<dyn Resolve>,
    ) -> Result<(Config, Source), SourceError> {
        let text = config::read(path, max_size).map_err(SourceError::Read)?;
        Source::from_text(path, text, resolver).map_err(SourceError::Invalid)
    }

    /// [`Source::load`] for text already read from `path`.
    pub(crate) fn from_text(
        path: &Path,
        text: String,
        resolver: Arc<dyn Resolve>,
    ) -> Result<(Config, Source), ConfigErrors> {
        let prepared = config::prepare(&text, path)?;
        let resolved = prepared.resolve(&*resolver, &[]);
        let source = Source {
            path: path.to_path_buf(),
            text,
            prepared: Arc::new(prepared),
            resolver,
            notes: resolved.notes,
        };
        Ok((resolved.config, source))
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
