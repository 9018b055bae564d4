//! Reading and writing framed record files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

const MAGIC: &[u8; 8] = b"MUSTER01";
/// Bytes of a record's frame: length and checksum.
const FRAME: usize = 8;
/// The largest record the reader accepts; larger is corruption.
const MAX_RECORD: usize = 64 << 20;
/// The largest item muster writes: a registry change is a few KiB at most (its inputs
/// are bounded), so this leaves room and stays far below [`MAX_RECORD`], and the store
/// never writes a record its reader would refuse.
pub const MAX_ITEM: usize = 1 << 20;

/// One logged item, when it was applied (replay uses the same time), and the revision
/// after it. A record without an item only marks how far the revision got.
#[derive(serde::Deserialize)]
pub struct Entry<T> {
    pub time: u64,
    pub revision: u64,
    #[serde(default = "Option::default")]
    pub change: Option<T>,
}

impl<T> Entry<T> {
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.time)
    }
}

/// An item's JSON, encoded before it is applied so that one too large to log is refused
/// while refusing still changes nothing.
pub struct Encoded(Vec<u8>);

/// Why an item cannot be logged.
#[derive(Debug, thiserror::Error)]
#[error("{0} bytes; the log takes at most {MAX_ITEM} bytes per change")]
pub struct TooLarge(pub usize);

impl Encoded {
    pub fn new<T: Serialize>(item: &T) -> Result<Self, TooLarge> {
        let json = serde_json::to_vec(item).expect("logged items serialize to JSON");
        if json.len() > MAX_ITEM {
            return Err(TooLarge(json.len()));
        }
        Ok(Self(json))
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// Appends one framed record to `buffer`: `{"time": ..., "revision": ..., "change": ...}`,
/// the change left out for a revision marker.
pub fn frame(time: SystemTime, revision: u64, item: Option<&Encoded>, buffer: &mut Vec<u8>) {
    let mut payload = format!("{{\"time\":{},\"revision\":{revision}", millis(time)).into_bytes();
    if let Some(Encoded(json)) = item {
        payload.extend_from_slice(b",\"change\":");
        payload.extend_from_slice(json);
    }
    payload.push(b'}');
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buffer.extend_from_slice(&payload);
}

/// What reading a file found.
pub struct Contents<T> {
    pub entries: Vec<Entry<T>>,
    /// Bytes of whole, valid records (including the magic): where a torn tail starts.
    pub valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub corruption: Option<String>,
}

/// Reads every valid record of the file at `path`, stopping at the first bad one.
pub fn read<T: DeserializeOwned>(path: &Path) -> io::Result<Contents<T>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(parse(&bytes, &path.display().to_string()))
}

/// Reads the records in `bytes` (a whole file named `name`), stopping at the first bad one.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], name: &str) -> Contents<T> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Contents {
            entries: Vec::new(),
            valid_len: 0,
            corruption: Some(format!("{name} does not start with {:?}", "MUSTER01")),
        };
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
        if len > MAX_RECORD || rest.len() - FRAME < len {
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
    Contents {
        entries,
        valid_len: offset as u64,
        corruption,
    }
}

/// Creates `path` holding only the magic, durably (the file and its directory).
pub fn create(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    let written = file.write_all(MAGIC).and_then(|()| file.sync_all());
    if let Err(error) = written.and_then(|()| sync_dir(path)) {
        // A file without its magic would read as corrupt: never leave one behind.
        let _ = fs::remove_file(path);
        return Err(error);
    }
    Ok(file)
}

/// Bytes of an empty file: the magic.
pub fn empty_len() -> u64 {
    MAGIC.len() as u64
}

/// Writes the records `(time, revision, item)` of `records` to `path` atomically: a
/// `.tmp` file, fsync, read back and checked to hold every record (so a snapshot that
/// would not load never replaces what it summarizes), rename, fsync the folder. A
/// failure leaves no `.tmp`.
pub fn write_atomically<T: DeserializeOwned>(
    path: &Path,
    records: impl Iterator<Item = Result<(SystemTime, u64, Option<Encoded>), TooLarge>>,
) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let _ = fs::remove_file(&temporary);
    let written = write_records(&temporary, records)
        .and_then(|count| {
            let contents = read::<T>(&temporary)?;
            match contents.corruption {
                None if contents.entries.len() == count => Ok(()),
                corruption => Err(io::Error::other(format!(
                    "the snapshot does not read back: {} of {count} records{}",
                    contents.entries.len(),
                    corruption.map(|c| format!(", {c}")).unwrap_or_default()
                ))),
            }
        })
        .and_then(|()| fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    sync_dir(path)
}

/// Creates `path` with `records`, fsynced; returns how many it holds.
fn write_records(
    path: &Path,
    records: impl Iterator<Item = Result<(SystemTime, u64, Option<Encoded>), TooLarge>>,
) -> io::Result<usize> {
    let mut file = create(path)?;
    let mut buffer = Vec::with_capacity(1 << 20);
    let mut count = 0;
    for record in records {
        let (time, revision, item) = record.map_err(io::Error::other)?;
        frame(time, revision, item.as_ref(), &mut buffer);
        count += 1;
        if buffer.len() >= 1 << 20 {
            file.write_all(&buffer)?;
            buffer.clear();
        }
    }
    file.write_all(&buffer)?;
    file.sync_all()?;
    Ok(count)
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
