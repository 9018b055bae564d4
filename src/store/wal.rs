//! The write-ahead log: open (lock, recover), append batches, survive a full disk,
//! compact.

use std::fs::{self, File};
use std::io::{self, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::files::{self, Encoded};
use super::metrics::StoreMetrics;
use super::recover::recover;

/// A segment larger than this is rotated and the state before it snapshotted.
const SEGMENT_LIMIT: u64 = 64 << 20;
/// The revision is logged at least once every this many revisions, even when only
/// sources that are not logged (files, ECS) change things, so that after a restart the
/// registry can start above any revision it ever published: the SOA serial that
/// secondaries compare never goes backwards, at the cost of one fsync per stride.
pub const REVISION_STRIDE: u64 = 1000;
/// How often a log that cannot be written is tried again.
const RETRY: Duration = Duration::from_secs(1);

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

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What was on disk at start: the items to replay, in order.
pub struct Recovered<T> {
    pub changes: Vec<(SystemTime, T)>,
    /// A revision above every revision published before the restart.
    pub next_revision: u64,
    /// Bytes cut from a torn or corrupt tail (0 when the log was clean).
    pub truncated_bytes: u64,
}

/// The open log of items of type `T`; only the registry's writer uses it.
pub struct Wal<T> {
    dir: PathBuf,
    _lock: File,
    /// The segment appended to; `None` when it could not be created (a full disk).
    segment: Option<File>,
    segment_number: u64,
    /// Durable length of the segment: where a failed write is cut back to.
    segment_len: u64,
    segment_limit: u64,
    staged: Vec<u8>,
    /// The highest revision staged or written.
    staged_revision: u64,
    /// The highest revision written.
    logged_revision: u64,
    /// Why writes fail, while they do: the log is read-only until a retry succeeds.
    failure: Option<Failure>,
    compaction: Option<JoinHandle<()>>,
    /// No rotation before this (a rotation failed).
    rotate_after: Option<Instant>,
    metrics: StoreMetrics,
    _items: PhantomData<fn(T) -> T>,
}

struct Failure {
    reason: String,
    retry_at: Instant,
}

/// Reads what the log in `dir` holds, as [`Wal::open`] would at start (a torn tail is
/// cut), without opening a segment; refused while a muster runs on `dir`. For `muster
/// etcd import`.
pub fn read_log<T: DeserializeOwned>(dir: &Path) -> Result<Recovered<T>, StoreError> {
    let lock_path = dir.join("LOCK");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(StoreError::Locked(dir.to_owned()));
    }
    Ok(recover(dir)?.0)
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Wal<T> {
    /// Locks `dir`, reads what it holds, cuts a torn tail, and opens a new segment. When
    /// the disk has no room for one, the log opens read-only and keeps trying.
    pub fn open(
        dir: &Path,
        metrics_registry: &mut Registry,
    ) -> Result<(Self, Recovered<T>), StoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
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
        let metrics = StoreMetrics::default();
        metrics.register(metrics_registry);
        metrics.recovered.set(recovered.changes.len() as i64);
        metrics.truncated.set(recovered.truncated_bytes as i64);
        let logged_revision = recovered.next_revision - REVISION_STRIDE;
        let mut wal = Self {
            dir: dir.to_owned(),
            _lock: lock,
            segment: None,
            segment_number: last_segment,
            segment_len: 0,
            segment_limit: SEGMENT_LIMIT,
            staged: Vec::new(),
            staged_revision: logged_revision,
            logged_revision,
            failure: None,
            compaction: None,
            rotate_after: None,
            metrics,
            _items: PhantomData,
        };
        if let Err(error) = wal.new_segment() {
            tracing::error!(%error, "cannot open a log segment; starting read-only");
            wal.fail(&error);
        }
        Ok((wal, recovered))
    }

    /// Encodes `item` for [`Wal::stage`]; an item too large to log is refused here,
    /// before anything applies it.
    pub fn encode(&self, item: &T) -> Result<Encoded, files::TooLarge> {
        Encoded::new(item)
    }

    /// Why writes are refused, while the log cannot be written.
    pub fn read_only(&self) -> Option<&str> {
        self.failure.as_ref().map(|f| f.reason.as_str())
    }

    /// When the log is read-only, the moment it should be tried again.
    pub fn retry_at(&self) -> Option<Instant> {
        self.failure.as_ref().map(|f| f.retry_at)
    }

    /// Tries a read-only log again, if its retry is due: a revision marker written and
    /// fsynced makes it writable. Returns whether it is writable.
    pub fn retry(&mut self, time: SystemTime, revision: u64) -> bool {
        let Some(failure) = &self.failure else {
            return true;
        };
        if Instant::now() < failure.retry_at {
            return false;
        }
        let tried = match self.segment {
            Some(_) => Ok(()),
            None => self.new_segment(),
        }
        .and_then(|()| {
            self.staged.clear();
            files::frame(time, revision, None, &mut self.staged);
            self.staged_revision = revision;
            self.write_staged()
        });
        match tried {
            Ok(()) => {
                tracing::info!("the log is writable again; accepting writes");
                self.failure = None;
                self.metrics.read_only.set(0);
                true
            }
            Err(error) => {
                self.fail(&error);
                false
            }
        }
    }

    /// Adds an item, applied at `time` and resulting in `revision`, to the batch
    /// [`Wal::commit`] writes.
    pub fn stage(&mut self, time: SystemTime, revision: u64, item: Encoded) {
        files::frame(time, revision, Some(&item), &mut self.staged);
        self.staged_revision = revision;
        self.metrics.records.inc();
    }

    /// Stages a revision marker if `revision` got [`REVISION_STRIDE`] ahead of the log.
    pub fn stage_revision(&mut self, time: SystemTime, revision: u64) {
        if revision >= self.staged_revision.saturating_add(REVISION_STRIDE) {
            files::frame(time, revision, None, &mut self.staged);
            self.staged_revision = revision;
        }
    }

    /// Writes the staged items and fsyncs them; they are durable when this returns Ok.
    /// On an error nothing staged is kept: the segment is cut back to what was durable,
    /// and the log is read-only until [`Wal::retry`] succeeds.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        if let Some(failure) = &self.failure {
            self.staged.clear();
            return Err(io::Error::other(failure.reason.clone()));
        }
        let written = self.write_staged();
        if let Err(error) = &written {
            self.fail(error);
        }
        written
    }

    fn write_staged(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let Some(segment) = self.segment.as_mut() else {
            self.staged.clear();
            return Err(io::Error::other("no log segment is open"));
        };
        let written = segment
            .write_all(&self.staged)
            .and_then(|()| segment.sync_data());
        match written {
            Ok(()) => {
                self.segment_len += self.staged.len() as u64;
                self.logged_revision = self.staged_revision;
                self.staged.clear();
                self.metrics.fsync.observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(error) => {
                self.staged.clear();
                self.staged_revision = self.logged_revision;
                // A partly written batch would be corruption in the middle of the log
                // once later batches follow it: cut it off. Shrinking needs no space;
                // if even that fails, the next write goes to a new segment.
                let cut = segment
                    .set_len(self.segment_len)
                    .and_then(|()| segment.sync_all());
                if let Err(cut) = cut {
                    tracing::error!(error = %cut, "cannot cut a failed write from the log; the next write starts a new segment");
                    self.segment = None;
                }
                Err(error)
            }
        }
    }

    fn fail(&mut self, error: &io::Error) {
        if self.failure.is_none() {
            tracing::error!(%error, "the log cannot be written; API writes are refused until it can");
        }
        self.metrics.write_failures.inc();
        self.metrics.read_only.set(1);
        self.failure = Some(Failure {
            reason: format!("the write-ahead log cannot be written: {error}"),
            retry_at: Instant::now() + RETRY,
        });
    }

    /// Opens the segment after the current one.
    fn new_segment(&mut self) -> io::Result<()> {
        let next = self.segment_number + 1;
        let path = files::numbered_path(&self.dir, "wal", next);
        let segment = files::create(&path)?;
        self.segment = Some(segment);
        self.segment_number = next;
        self.segment_len = files::empty_len();
        Ok(())
    }

    /// When the segment is large and no compaction is running: starts a new segment and,
    /// on a thread, writes `state()` (everything logged so far) as a snapshot, then
    /// deletes the files it replaces. Failures keep the current files and are retried.
    pub fn maybe_compact(
        &mut self,
        revision: u64,
        state: impl FnOnce() -> Vec<(SystemTime, T)> + Send + 'static,
    ) {
        if self.segment_len < self.segment_limit
            || self.failure.is_some()
            || self
                .rotate_after
                .is_some_and(|after| Instant::now() < after)
            || self.compaction.as_ref().is_some_and(|c| !c.is_finished())
        {
            return;
        }
        if let Err(error) = self.new_segment() {
            tracing::warn!(%error, "cannot start a new log segment; compaction waits");
            self.rotate_after = Some(Instant::now() + RETRY * 10);
            return;
        }
        self.rotate_after = None;
        let (dir, number) = (self.dir.clone(), self.segment_number);
        let failures = self.metrics.compaction_failures.clone();
        self.compaction = Some(std::thread::spawn(move || {
            if let Err(error) = compact(&dir, number, revision, state()) {
                failures.inc();
                tracing::error!(%error, "compaction failed; the log segments it would replace are kept");
            }
        }));
    }

    #[cfg(test)]
    pub(super) fn finish_compaction(&mut self) {
        if let Some(running) = self.compaction.take() {
            running
                .join()
                .expect("the compaction thread does not panic");
        }
    }

    /// Swaps the segment for the same file opened read-only, so the next write fails
    /// as a failing disk's does (tests run as root, whom permissions do not stop).
    #[cfg(test)]
    pub(crate) fn break_segment(&mut self) {
        let path = files::numbered_path(&self.dir, "wal", self.segment_number);
        self.segment = Some(File::open(path).expect("the segment opens read-only"));
    }

    #[cfg(test)]
    pub(super) fn set_segment_limit(&mut self, limit: u64) {
        self.segment_limit = limit;
    }
}

/// Writes the snapshot that replaces everything before segment `number`, checked to
/// read back, then deletes the files it replaces.
fn compact<T: Serialize + DeserializeOwned>(
    dir: &Path,
    number: u64,
    revision: u64,
    state: Vec<(SystemTime, T)>,
) -> io::Result<()> {
    let path = files::numbered_path(dir, "snapshot", number);
    let items = state
        .iter()
        .map(|(time, item)| Ok((*time, revision, Some(Encoded::new(item)?))));
    let marker = std::iter::once(Ok((SystemTime::now(), revision, None)));
    files::write_atomically::<T>(&path, items.chain(marker))?;
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

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
