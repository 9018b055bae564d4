//! The fast path: answers the common queries from pre-encoded records (over UDP on one
//! thread per core, over TCP from the connection's task), and hands everything else to
//! the full (hickory) path unchanged.
//!
//! Owns: the UDP sockets and their threads ([`udp`]), batched datagram I/O
//! ([`batch`]), reading a query just far enough to
//! know it is ordinary ([`query`]), writing a response from the zone's pre-encoded
//! records ([`respond`]), and running the full path for a datagram it does not answer
//! ([`handoff`]). What an answer contains is decided by [`plan`](super::answer::plan),
//! the same function the full path uses. Must not: allocate, lock or log per answered
//! query; answer anything the full path would answer differently.
//!
//! See `README.md` in this folder for the design and its measurements.

mod batch;
mod handoff;
mod query;
mod respond;
mod udp;

pub use handoff::full_path;
pub(crate) use handoff::{encode, handle};
pub(crate) use query::cookie_length_ok;
pub use respond::{Handling, Scratch, Settings, respond};
pub use udp::{bind, serve, threads};
