//! Durability for what the APIs write: a write-ahead log with periodic snapshots.
//!
//! With `[etcd]` (feature `etcd`), [`etcd`] is the store instead: the registry's writer
//! talks to one or the other, and nothing else learns which runs.
//!
//! Owns: the files in `data_dir` and their format. Generic over the item it stores
//! (the registry stores its `Change`s): it frames, checksums, syncs and reads back
//! items, and knows nothing of what they mean. The registry's writer encodes each API
//! change *before* applying it (so one too large to log is refused while refusing
//! changes nothing), stages it *after* applying it, and commits the batch *before*
//! publishing or acknowledging it: the log's order is the apply order, a batch shares
//! one fsync (group commit), and nothing is acknowledged before it is on disk.
//!
//! # Files
//!
//! - `LOCK`: held with `flock` while muster runs; a second muster on the same directory
//!   refuses to start.
//! - `wal-NNNNNNNNNN.log`: log segments, numbered in order. Each start opens a new one.
//! - `snapshot-NNNNNNNNNN.log`: everything the APIs wrote before segment `NNNNNNNNNN`,
//!   as items that recreate it. Written as `.tmp`, fsynced, read back and checked to
//!   hold every record, renamed, directory fsynced; only then are the segments before
//!   it deleted.
//!
//! # Record format
//!
//! Every file starts with the 8 bytes `MUSTER01`, then records:
//! `length: u32 LE | crc32: u32 LE (of the payload) | payload`, where the payload is the
//! JSON `{"time": <unix ms>, "revision": <registry revision>, "change": <item>}`. A
//! record without `change` only marks the revision: written at least every
//! [`REVISION_STRIDE`] revisions, it lets a restarted registry begin above every revision
//! (SOA serial) it published before. The reader accepts records up to 64 MiB; the writer
//! refuses items over 1 MiB ([`MAX_ITEM`]), so it never writes what it would not read.
//!
//! # Durability and corruption
//!
//! A batch is written with one `write` and made durable with `fdatasync` before the
//! registry publishes it. On start, the newest snapshot is read, then every later
//! segment in order. A record that is cut short, fails its checksum or does not decode is
//! corruption: at the tail of the newest segment (a crash mid-write) it is reported and
//! the segment is truncated there, keeping every earlier record; anywhere else muster
//! refuses to start rather than guess.
//!
//! # A full disk
//!
//! A batch that cannot be written (no space, an I/O error) is cut back off the segment,
//! so the log never holds half a batch, and nothing of it is acknowledged: the registry
//! undoes the batch's API changes and answers them with an error (503). The log is then
//! read-only: API writes are refused at once while DNS keeps answering, and every
//! second a revision marker is tried; when it is written, writes are accepted again. A
//! start on a disk too full for a new segment recovers what is on disk and opens
//! read-only the same way.
//!
//! Metrics: `muster_store_records_total`, `muster_store_fsync_seconds`,
//! `muster_store_recovered_records`, `muster_store_truncated_bytes`,
//! `muster_store_write_failures_total`, `muster_store_read_only`,
//! `muster_store_compaction_failures_total`.

#[cfg(feature = "etcd")]
pub mod etcd;
mod files;
pub mod members;
mod metrics;
mod recover;
mod wal;

pub use files::{Encoded, MAX_ITEM, TooLarge};
pub use wal::{REVISION_STRIDE, Recovered, StoreError, Wal, read_log};
