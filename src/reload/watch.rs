//! Watches the config file's **directory** (not the file): editors write a temporary file and
//! rename it over the config, and Kubernetes swaps a ConfigMap's `..data` symlink; a watch on the
//! file itself would lose track after the first such edit.
//!
//! Only events on names that can change what the config path reads are passed on: the config's
//! own file name, and each name its symlink chain goes through inside the directory (`..data` for
//! a ConfigMap mount). Other files in the directory (a log file, say) are ignored, so they can
//! neither delay a reload nor cause one. The reloader debounces what passes and skips files whose
//! text did not change.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Component, Path};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Links followed at most when collecting the names a config path goes through.
const MAX_LINKS: usize = 8;

/// Starts watching the directory of `path`; each relevant event sends `()` on `events`. The
/// watch lasts as long as the returned watcher.
pub fn watch(path: &Path, events: mpsc::UnboundedSender<()>) -> notify::Result<RecommendedWatcher> {
    let dir = directory(path);
    let names = relevant_names(path);
    tracing::debug!(dir = %dir.display(), ?names, "watching the config directory");
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if changes_files(&e.kind) && concerns(&e, &names) => {
                tracing::debug!(kind = ?e.kind, paths = ?e.paths, "config file changed");
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

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The names in the config's directory whose change can change what `path` reads: its file
/// name and, when it is a symlink, the first component of each relative link target on the way
/// (Kubernetes: `fulcrum.toml -> ..data/fulcrum.toml`, so `..data` too).
fn relevant_names(path: &Path) -> HashSet<OsString> {
    let mut names: HashSet<OsString> = path.file_name().map(OsString::from).into_iter().collect();
    let dir = directory(path);
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let Ok(target) = std::fs::read_link(&current) else {
            break;
        };
        if target.is_absolute() {
            break;
        }
        if let Some(Component::Normal(first)) = target.components().next() {
            names.insert(first.to_os_string());
        }
        current = dir.join(target);
    }
    names
}

/// Whether an event can mean new file content: not a mere open, read or metadata change (our
/// own reads of the config make those, e.g. an access-time update).
fn changes_files(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// Whether the event touches one of `names` (or cannot tell: a lost-events rescan).
fn concerns(event: &notify::Event, names: &HashSet<OsString>) -> bool {
    event.need_rescan()
        || event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.contains(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_a_configmap_style_symlink_chain() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_11_22")).unwrap();
        std::fs::write(d.join("..2026_11_22/fulcrum.toml"), "").unwrap();
        std::os::unix::fs::symlink("..2026_11_22", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/fulcrum.toml", d.join("fulcrum.toml")).unwrap();
        let names = relevant_names(&d.join("fulcrum.toml"));
        let want: HashSet<OsString> = ["fulcrum.toml", "..data"].map(OsString::from).into();
        assert_eq!(names, want);

        std::fs::write(d.join("plain.toml"), "").unwrap();
        let names = relevant_names(&d.join("plain.toml"));
        assert_eq!(names, HashSet::from([OsString::from("plain.toml")]));
    }

    #[test]
    fn only_events_on_relevant_names_that_can_change_content_count() {
        let names: HashSet<OsString> = HashSet::from([OsString::from("f.toml")]);
        let event = |kind, path: &str| notify::Event::new(kind).add_path(path.into());
        let write = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
        assert!(concerns(&event(write, "/etc/x/f.toml"), &names));
        assert!(!concerns(&event(write, "/etc/x/fulcrum.log"), &names));
        assert!(changes_files(&write));
        assert!(!changes_files(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_files(&EventKind::Modify(ModifyKind::Metadata(
            notify::event::MetadataKind::AccessTime
        ))));
    }
}
