//! Durability for what the APIs write: a write-ahead log with periodic snapshots.
//!
//! Owns: the files in `data_dir` and their format. The registry's writer calls
//! [`Wal::append`] for each batch of API changes *after* applying them in memory and
//! *before* publishing or acknowledging them, so the log's order is the apply order, a
//! batch shares one fsync (group commit), and nothing is acknowledged before it is on
//! disk. Must not: interpret changes (it stores and returns them).
//!
//! # Files
//!
//! - `LOCK`: held with `flock` while muster runs; a second muster on the same directory
//!   refuses to start.
//! - `wal-NNNNNNNNNN.log`: log segments, numbered in order. Each start opens a new one.
//! - `snapshot-NNNNNNNNNN.log`: everything the APIs wrote before segment `NNNNNNNNNN`,
//!   as changes that recreate it. Written as `.tmp`, fsynced, renamed, directory
//!   fsynced; only then are the segments before it deleted.
//!
//! # Record format
//!
//! Every file starts with the 8 bytes `MUSTER01`, then records:
//! `length: u32 LE | crc32: u32 LE (of the payload) | payload`, where the payload is the
//! JSON of `{"time": <unix ms>, "revision": <registry revision>, "change": <registry
//! Change>}`. A record without `change` only marks the revision: written at least every
//! [`REVISION_STRIDE`] revisions, it lets a restarted registry begin above every revision
//! (SOA serial) it published before.
//!
//! # Durability and corruption
//!
//! A batch is written with one `write` and made durable with `fdatasync` before the
//! registry publishes it. On start, the newest snapshot is read, then every later
//! segment in order. A record that is cut short, fails its checksum or does not decode is
//! corruption: at the tail of the newest segment (a crash mid-write) it is reported and
//! the segment is truncated there, keeping every earlier record; anywhere else muster
//! refuses to start rather than guess. Metrics: `muster_store_records_total`,
//! `muster_store_fsync_seconds`, `muster_store_recovered_records`,
//! `muster_store_truncated_bytes`.

mod files;
mod wal;

pub use wal::{REVISION_STRIDE, Recovered, StoreError, Wal};
