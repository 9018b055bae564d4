//! What muster's load clients (`src/bin/`, and `examples/cloudmap_load.rs` through
//! `#[path]`) share: a keep-alive HTTP/1.1 client, the `--flag value` command line and the
//! summary they print. Standard library only, so each client builds in seconds and costs
//! little of the CPU muster shares with it on the benchmark machine.

pub mod flags;
pub mod http1;
pub mod summary;
pub mod writes;
