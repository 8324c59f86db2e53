//! Folder watching for hot reload (policies) and hot swap (model bundles): a `notify` watcher
//! whose events wake one thread, which waits for the writes to settle and calls back.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

/// Watch `dirs` (recursively); after each burst of changes, once `quiet` has passed, call
/// `on_change` with the target, as long as it is alive. Keep the returned watcher alive.
pub fn spawn<T: Send + Sync + 'static>(
    name: &str,
    dirs: &[PathBuf],
    quiet: Duration,
    target: Weak<T>,
    on_change: fn(&T),
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    })?;
    let mut dirs = dirs.to_vec();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        w.watch(d, RecursiveMode::Recursive)?;
    }
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // Editors and bundle writers change files in several steps: let them finish.
                std::thread::sleep(quiet);
                while rx.try_recv().is_ok() {}
                match target.upgrade() {
                    Some(t) => on_change(&t),
                    None => return,
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(w)
}
