//! The `file` source: static instances from a TOML or JSON file, for development and
//! fixed hosts.
//!
//! - **Watches:** one file (`[[sources.file]] path`), through inotify on its folder so
//!   editors that write a new file and rename it over the old one are seen.
//! - **Emits:** one `Change::Sync` of everything in the file after every good read; the
//!   source id is `file:<path>`.
//! - **Config:** [`FileSourceConfig`].
//! - **Readiness:** synced after the first good read. A file that is missing or invalid is
//!   reported and the last good state is kept (at start: not ready until it is fixed).
//! - **Sync state** ([`crate::sources::status`]): synced by every read that applied the
//!   file or found it unchanged since it was (every 5 s at least); a read or apply that
//!   failed is the last error.
//! - **Format:** see [`parse`]; `.json` files are JSON, anything else TOML.

mod config;
mod parse;
mod watch;

pub use config::FileSourceConfig;
pub use parse::{FileError, parse};
pub use watch::{run, source_id};
