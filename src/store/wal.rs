//! The write-ahead log: open (lock, recover), append batches, compact.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::files::{self, Entry};
use crate::registry::Change;

/// A segment larger than this is rotated and the state before it snapshotted.
const SEGMENT_LIMIT: u64 = 64 << 20;
/// The revision is logged at least once every this many revisions, even when only
/// sources that are not logged (files, ECS) change things, so that after a restart the
/// registry can start above any revision it ever published: the SOA serial that
/// secondaries compare never goes backwards, at the cost of one fsync per stride.
pub const REVISION_STRIDE: u64 = 1000;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is in use by another muster (its LOCK file is held)")]
    Locked(PathBuf),
    #[error("the log is corrupt before its tail, refusing to guess: {0}")]
    Corrupt(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What was on disk at start: the changes to replay, in order.
pub struct Recovered {
    pub changes: Vec<(SystemTime, Change)>,
    /// A revision above every revision published before the restart.
    pub next_revision: u64,
    /// Bytes cut from a torn or corrupt tail (0 when the log was clean).
    pub truncated_bytes: u64,
}

/// The open log; only the registry's writer uses it.
pub struct Wal {
    dir: PathBuf,
    _lock: File,
    segment: File,
    segment_number: u64,
    segment_bytes: u64,
    segment_limit: u64,
    staged: Vec<u8>,
    /// The highest revision staged or written.
    logged_revision: u64,
    compaction: Option<JoinHandle<io::Result<()>>>,
    metrics: StoreMetrics,
}

/// `muster_store_*` metrics.
#[derive(Clone)]
pub struct StoreMetrics {
    records: Counter,
    fsync: Histogram,
    recovered: Gauge,
    truncated: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            records: Counter::default(),
            fsync: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            recovered: Gauge::default(),
            truncated: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    fn register(&self, registry: &mut Registry) {
        let store = registry.sub_registry_with_prefix("muster_store");
        store.register(
            "records",
            "Changes written to the write-ahead log",
            self.records.clone(),
        );
        store.register(
            "fsync_seconds",
            "Time to write and fsync one batch",
            self.fsync.clone(),
        );
        store.register(
            "recovered_records",
            "Changes replayed at start",
            self.recovered.clone(),
        );
        store.register(
            "truncated_bytes",
            "Bytes cut from a torn log tail at start",
            self.truncated.clone(),
        );
    }
}

impl Wal {
    /// Locks `dir`, reads what it holds, cuts a torn tail, and opens a new segment.
    pub fn open(
        dir: &Path,
        metrics_registry: &mut Registry,
    ) -> Result<(Self, Recovered), StoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(io_error(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.to_owned()));
        }
        // A snapshot a crash interrupted: never renamed into place, so never read.
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("snapshot-") && name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        let (recovered, last_segment) = recover(dir)?;
        let segment_number = last_segment + 1;
        let path = files::numbered_path(dir, "wal", segment_number);
        let segment = files::create(&path).map_err(io_error(&path))?;
        let logged_revision = recovered.next_revision - REVISION_STRIDE;
        let metrics = StoreMetrics::default();
        metrics.register(metrics_registry);
        metrics.recovered.set(recovered.changes.len() as i64);
        metrics.truncated.set(recovered.truncated_bytes as i64);
        let wal = Self {
            dir: dir.to_owned(),
            _lock: lock,
            segment,
            segment_number,
            segment_bytes: 0,
            segment_limit: SEGMENT_LIMIT,
            staged: Vec::new(),
            logged_revision,
            compaction: None,
            metrics,
        };
        Ok((wal, recovered))
    }

    /// Adds a change, applied at `time` and resulting in `revision`, to the batch
    /// [`Wal::commit`] writes.
    pub fn stage(&mut self, time: SystemTime, revision: u64, change: Change) {
        files::frame(&Entry::new(time, revision, Some(change)), &mut self.staged);
        self.logged_revision = revision;
        self.metrics.records.inc();
    }

    /// Stages a revision marker if `revision` got [`REVISION_STRIDE`] ahead of the log.
    pub fn stage_revision(&mut self, time: SystemTime, revision: u64) {
        if revision >= self.logged_revision + REVISION_STRIDE {
            files::frame(&Entry::new(time, revision, None), &mut self.staged);
            self.logged_revision = revision;
        }
    }

    /// Writes the staged changes and fsyncs them; they are durable when this returns Ok.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.segment.write_all(&self.staged)?;
        self.segment.sync_data()?;
        self.segment_bytes += self.staged.len() as u64;
        self.staged.clear();
        self.metrics.fsync.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// When the segment is large and no compaction is running: starts a new segment and,
    /// on a thread, writes `state()` (everything logged so far) as a snapshot, then
    /// deletes the files it replaces.
    pub fn maybe_compact(
        &mut self,
        revision: u64,
        state: impl FnOnce() -> Vec<(SystemTime, Change)> + Send + 'static,
    ) -> io::Result<()> {
        if self.segment_bytes < self.segment_limit {
            return Ok(());
        }
        if let Some(running) = self.compaction.take() {
            if !running.is_finished() {
                self.compaction = Some(running);
                return Ok(());
            }
            if let Ok(Err(error)) = running.join() {
                tracing::error!(%error, "the last snapshot failed; its log segments are kept");
            }
        }
        let next = self.segment_number + 1;
        let path = files::numbered_path(&self.dir, "wal", next);
        self.segment = files::create(&path)?;
        self.segment_number = next;
        self.segment_bytes = 0;
        let dir = self.dir.clone();
        self.compaction = Some(std::thread::spawn(move || {
            snapshot(&dir, next, revision, state())
        }));
        Ok(())
    }
}

/// Writes the snapshot that replaces everything before segment `number`, then deletes it.
fn snapshot(
    dir: &Path,
    number: u64,
    revision: u64,
    state: Vec<(SystemTime, Change)>,
) -> io::Result<()> {
    let path = files::numbered_path(dir, "snapshot", number);
    let marker = Entry::new(SystemTime::now(), revision, None);
    let entries = state
        .into_iter()
        .map(|(time, change)| Entry::new(time, revision, Some(change)));
    files::write_atomically(&path, entries.chain([marker]))?;
    for kind in ["wal", "snapshot"] {
        for (older, old_path) in files::numbered(dir, kind)? {
            if older < number {
                fs::remove_file(old_path)?;
            }
        }
    }
    files::sync_dir(&path)?;
    tracing::info!(snapshot = %path.display(), "log compacted");
    Ok(())
}

/// Reads the newest snapshot and the segments after it; returns the changes and the
/// number of the last segment.
fn recover(dir: &Path) -> Result<(Recovered, u64), StoreError> {
    let snapshots = files::numbered(dir, "snapshot").map_err(io_error(dir))?;
    let segments = files::numbered(dir, "wal").map_err(io_error(dir))?;
    let start = snapshots.last().map_or(0, |(number, _)| *number);
    let mut changes = Vec::new();
    let mut truncated_bytes = 0;
    let mut revision = 0;
    let mut take = |entries: Vec<Entry>| {
        for entry in entries {
            revision = revision.max(entry.revision);
            let time = entry.time();
            changes.extend(entry.change.map(|change| (time, change)));
        }
    };
    if let Some((_, path)) = snapshots.last() {
        let contents = files::read(path).map_err(io_error(path))?;
        if let Some(corruption) = contents.corruption {
            return Err(StoreError::Corrupt(format!(
                "{}: {corruption}",
                path.display()
            )));
        }
        take(contents.entries);
    }
    let replayed: Vec<&(u64, PathBuf)> = segments.iter().filter(|(n, _)| *n >= start).collect();
    for (index, (_, path)) in replayed.iter().enumerate() {
        let contents = files::read(path).map_err(io_error(path))?;
        take(contents.entries);
        let Some(corruption) = contents.corruption else {
            continue;
        };
        if index + 1 != replayed.len() {
            return Err(StoreError::Corrupt(format!(
                "{}: {corruption}",
                path.display()
            )));
        }
        let length = fs::metadata(path).map_err(io_error(path))?.len();
        truncated_bytes = length - contents.valid_len;
        if contents.valid_len == 0 {
            fs::remove_file(path).map_err(io_error(path))?;
            files::create(path).map_err(io_error(path))?;
        } else {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_error(path))?;
            file.set_len(contents.valid_len).map_err(io_error(path))?;
            file.sync_all().map_err(io_error(path))?;
        }
        tracing::warn!(
            segment = %path.display(),
            %corruption,
            truncated_bytes,
            "cut a torn or corrupt tail from the log; every record before it is kept"
        );
    }
    let last = segments
        .last()
        .map_or(start, |(number, _)| (*number).max(start));
    let recovered = Recovered {
        changes,
        next_revision: revision + REVISION_STRIDE,
        truncated_bytes,
    };
    Ok((recovered, last))
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
