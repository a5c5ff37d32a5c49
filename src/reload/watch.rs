//! Watches the config file's **directory** (not the file): editors write a temporary file and
//! rename it over the config, and Kubernetes swaps a ConfigMap's `..data` symlink; a watch on the
//! file itself would lose track after the first such edit. Every event in the directory that
//! can change a file is passed on; the reloader debounces them and skips files whose text did not
//! change.

use std::path::Path;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Starts watching the directory of `path`; each relevant event sends `()` on `events`. The
/// watch lasts as long as the returned watcher.
pub fn watch(path: &Path, events: mpsc::UnboundedSender<()>) -> notify::Result<RecommendedWatcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if changes_files(&e.kind) => {
                if events.send(()).is_err() {
                    tracing::debug!("config file changed while shutting down");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "config file watch error"),
        })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether an event can mean new file content: not a mere open or read (our own reads of the
/// config make those).
fn changes_files(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}
