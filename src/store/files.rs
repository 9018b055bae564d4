//! Reading and writing framed record files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::registry::Change;

const MAGIC: &[u8; 8] = b"MUSTER01";
const FRAME: usize = 8;
/// Larger records are corruption (a registry change is a few KiB at most).
const MAX_RECORD: usize = 64 << 20;

/// One logged change, when it was applied (replay uses the same time), and the registry
/// revision after it. A record without a change only marks how far the revision got.
#[derive(Serialize, Deserialize)]
pub struct Entry {
    pub time: u64,
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

impl Entry {
    pub fn new(time: SystemTime, revision: u64, change: Option<Change>) -> Self {
        let time = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        Self {
            time,
            revision,
            change,
        }
    }

    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.time)
    }
}

/// Appends one framed record for `entry` to `buffer`.
pub fn frame(entry: &Entry, buffer: &mut Vec<u8>) {
    let payload = serde_json::to_vec(entry).expect("changes serialize to JSON");
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buffer.extend_from_slice(&payload);
}

/// What reading a file found.
pub struct Contents {
    pub entries: Vec<Entry>,
    /// Bytes of whole, valid records (including the magic): where a torn tail starts.
    pub valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub corruption: Option<String>,
}

/// Reads every valid record of the file at `path`, stopping at the first bad one.
pub fn read(path: &Path) -> io::Result<Contents> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        let corruption = Some(format!(
            "{} does not start with {:?}",
            path.display(),
            "MUSTER01"
        ));
        return Ok(Contents {
            entries: Vec::new(),
            valid_len: 0,
            corruption,
        });
    }
    let mut entries = Vec::new();
    let mut offset = MAGIC.len();
    let corruption = loop {
        let rest = &bytes[offset..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < FRAME {
            break Some(format!("record header cut short at byte {offset}"));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD || rest.len() < FRAME + len {
            break Some(format!("record at byte {offset} cut short"));
        }
        let payload = &rest[FRAME..FRAME + len];
        if crc32fast::hash(payload) != crc {
            break Some(format!("record at byte {offset} fails its checksum"));
        }
        match serde_json::from_slice(payload) {
            Ok(entry) => entries.push(entry),
            Err(e) => break Some(format!("record at byte {offset} does not decode: {e}")),
        }
        offset += FRAME + len;
    };
    Ok(Contents {
        entries,
        valid_len: offset as u64,
        corruption,
    })
}

/// Creates `path` holding only the magic, durably (the file and its directory).
pub fn create(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    file.write_all(MAGIC)?;
    file.sync_all()?;
    sync_dir(path)?;
    Ok(file)
}

/// Writes `entries` to `path` atomically: a `.tmp` file, fsync, rename, fsync the folder.
pub fn write_atomically(path: &Path, entries: impl Iterator<Item = Entry>) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let _ = fs::remove_file(&temporary);
    let mut file = create(&temporary)?;
    let mut buffer = Vec::with_capacity(1 << 20);
    for entry in entries {
        frame(&entry, &mut buffer);
        if buffer.len() >= 1 << 20 {
            file.write_all(&buffer)?;
            buffer.clear();
        }
    }
    file.write_all(&buffer)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    sync_dir(path)
}

/// Makes a file's creation, rename or removal durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// The numbered files of one kind (`wal`, `snapshot`) in `dir`, in order.
pub fn numbered(dir: &Path, kind: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let number = name
            .strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(".log"))
            .and_then(|digits| digits.parse().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

pub fn numbered_path(dir: &Path, kind: &str, number: u64) -> PathBuf {
    dir.join(format!("{kind}-{number:010}.log"))
}
