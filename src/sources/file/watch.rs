//! The file source's I/O loop: read at start, then again whenever the file changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::config::FileSourceConfig;
use super::parse::parse;
use crate::registry::{Change, SourceId};
use crate::sources::{SourceContext, SourceStatus};

/// Editors write a file in several steps; wait this long after the last event.
const SETTLE: Duration = Duration::from_millis(50);
/// Reread this often even without events (a folder replaced under a watch, NFS).
const POLL: Duration = Duration::from_secs(5);

/// The source id of the file at `path`.
pub fn source_id(config: &FileSourceConfig) -> SourceId {
    SourceId::new(format!("file:{}", config.path.display()))
}

/// Watches the file and syncs it into the registry until shutdown; a configuration
/// reload (SIGHUP) rereads and reapplies it.
pub async fn run(config: FileSourceConfig, mut context: SourceContext) {
    let source = source_id(&config);
    let status = context.statuses.register(source.clone());
    let path = config.path;
    let (events, mut changed) = mpsc::channel::<()>(1);
    let _watcher = watch(&path, events)
        .inspect_err(|error| tracing::warn!(%source, %error, "cannot watch the file; polling it"))
        .ok();
    let mut last = Seen::Nothing;
    loop {
        load(&path, (&source, &status), &mut last, &context).await;
        tokio::select! {
            _ = context.shutdown.cancelled() => return,
            _ = changed.recv() => tokio::time::sleep(SETTLE).await,
            Ok(()) = context.reload.changed() => last = Seen::Nothing,
            _ = tokio::time::sleep(POLL) => {}
        }
        while changed.try_recv().is_ok() {}
    }
}

/// Watches the file's folder (the file itself may be replaced by a rename).
fn watch(path: &Path, events: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Access events (our own reads of the file among them) change nothing: counting
        // them would reread the file forever, each read causing the next.
        let ours = event.is_ok_and(|e| {
            !matches!(e.kind, notify::EventKind::Access(_))
                && e.paths.iter().any(|p| p.file_name() == name.as_deref())
        });
        if ours {
            let _ = events.try_send(());
        }
    })?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// What the last read found, so an unchanged file is not applied (or reported) again.
#[derive(PartialEq)]
enum Seen {
    Nothing,
    Unreadable,
    /// Text that was applied: read again unchanged, the source is still in sync.
    Applied(String),
    /// Text that did not parse or was refused: its error stands until the file changes.
    Refused(String),
}

/// Reads and applies the file if its text changed; errors keep the last good state. A
/// good read (applied, or unchanged since applied) is a sync; a failed one the status's
/// last error.
async fn load(
    path: &Path,
    (source, status): (&SourceId, &SourceStatus),
    last: &mut Seen,
    context: &SourceContext,
) {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(error) => {
            if *last != Seen::Unreadable {
                tracing::error!(%source, %error, "cannot read the file; keeping the last good state");
            }
            status.failed(&format_args!("cannot read the file: {error}"));
            *last = Seen::Unreadable;
            return;
        }
    };
    match last {
        Seen::Applied(previous) if *previous == text => return status.synced(),
        Seen::Refused(previous) if *previous == text => return,
        _ => {}
    }
    let json = path.extension().is_some_and(|e| e == "json");
    let result = match parse(&text, json) {
        Ok(instances) => {
            let change = Change::Sync {
                source: source.clone(),
                instances,
            };
            context
                .registry
                .apply(change)
                .await
                .map_err(|e| e.to_string())
        }
        Err(error) => Err(error.to_string()),
    };
    *last = match result {
        Ok(applied) => {
            tracing::info!(%source, revision = applied.revision, "file applied");
            status.synced();
            Seen::Applied(text)
        }
        Err(error) => {
            tracing::error!(%source, %error, "file not applied; keeping the last good state");
            status.failed(&format_args!("not applied: {error}"));
            Seen::Refused(text)
        }
    };
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
