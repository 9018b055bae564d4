//! Reading what the log holds at start, and cutting a torn tail.

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::files::{self, Entry};
use super::wal::{REVISION_STRIDE, Recovered, StoreError, io_error};

/// Reads the newest snapshot and the segments after it; returns what they hold and the
/// number of the last segment.
pub fn recover<T: DeserializeOwned>(dir: &Path) -> Result<(Recovered<T>, u64), StoreError> {
    let snapshots = files::numbered(dir, "snapshot").map_err(io_error(dir))?;
    let segments = files::numbered(dir, "wal").map_err(io_error(dir))?;
    let start = snapshots.last().map_or(0, |(number, _)| *number);
    let mut changes = Vec::new();
    let mut truncated_bytes = 0;
    let mut revision = 0;
    let mut take = |entries: Vec<Entry<T>>| {
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
        truncated_bytes = cut(path, contents.valid_len)?;
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
        next_revision: revision.saturating_add(REVISION_STRIDE),
        truncated_bytes,
    };
    Ok((recovered, last))
}

/// Cuts the segment at `path` to its first `valid_len` bytes (durably; shrinking needs
/// no free space) and returns how many bytes went.
fn cut(path: &Path, valid_len: u64) -> Result<u64, StoreError> {
    let length = fs::metadata(path).map_err(io_error(path))?.len();
    // Not even the magic is whole: the segment was being created. Keep its place with
    // a clean one if the disk allows; a missing segment is as good.
    if valid_len == 0 {
        fs::remove_file(path).map_err(io_error(path))?;
        if let Err(error) = files::create(path) {
            tracing::warn!(segment = %path.display(), %error, "cannot recreate the empty segment");
        }
        return Ok(length);
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(valid_len).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    Ok(length - valid_len)
}
