//! The file source's I/O loop: read at start, then again whenever the file changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
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
    let mut polled = false;
    loop {
        load(&path, (&source, &status), &mut last, &context, polled).await;
        polled = false;
        tokio::select! {
            _ = context.shutdown.cancelled() => return,
            _ = changed.recv() => tokio::time::sleep(SETTLE).await,
            Ok(()) = context.reload.changed() => last = Seen::Nothing,
            _ = tokio::time::sleep(POLL) => polled = true,
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

/// What the last read found, so an unchanged file is not applied (or reported) again:
/// the SHA-256 of its text, not the text (89 MB kept for good with a million instances),
/// its size, modification time and inode when it was read, and whether it was applied
/// (read again unchanged, the source is still in sync) or refused (its error stands
/// until the file changes).
#[derive(PartialEq)]
enum Seen {
    Nothing,
    Unreadable,
    Digest {
        digest: [u8; 32],
        stamp: Option<Stamp>,
        applied: bool,
    },
}

impl Seen {
    /// The file is as last read: still a sync if that text was applied; a refused text's
    /// error stands.
    fn unchanged(&self, status: &SourceStatus) {
        if let Seen::Digest { applied: true, .. } = self {
            status.synced();
        }
    }
}

/// A file's size, modification time and inode.
type Stamp = (u64, Option<std::time::SystemTime>, u64);

async fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = tokio::fs::metadata(path).await.ok()?;
    Some((metadata.len(), metadata.modified().ok(), metadata.ino()))
}

/// Reads and applies the file if its text changed; errors keep the last good state. A
/// good read (applied, or unchanged since applied) is a sync; a failed one the status's
/// last error. `polled` (no event came): the file is read only if its stamp moved, so a
/// large file is not read and hashed every [`POLL`] for nothing (89 MB at a million
/// instances).
async fn load(
    path: &Path,
    (source, status): (&SourceId, &SourceStatus),
    last: &mut Seen,
    context: &SourceContext,
    polled: bool,
) {
    let stamp = stamp(path).await;
    if polled
        && stamp.is_some()
        && let Seen::Digest { stamp: seen, .. } = last
        && *seen == stamp
    {
        return last.unchanged(status);
    }
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
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    if let Seen::Digest {
        digest: seen,
        stamp: at,
        ..
    } = last
        && *seen == digest
    {
        *at = stamp;
        return last.unchanged(status);
    }
    let json = path.extension().is_some_and(|e| e == "json");
    let parsed = parse(&text, json);
    // Freed before the registry builds its state from the instances, not after.
    drop(text);
    let result = match parsed {
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
    let applied = match result {
        Ok(applied) => {
            tracing::info!(%source, revision = applied.revision, "file applied");
            status.synced();
            true
        }
        Err(error) => {
            tracing::error!(%source, %error, "file not applied; keeping the last good state");
            status.failed(&format_args!("not applied: {error}"));
            false
        }
    };
    *last = Seen::Digest {
        digest,
        stamp,
        applied,
    };
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
