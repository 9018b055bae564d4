//! Integration tests, built as one binary. They start muster in-process on port 0.

mod cloudmap_sdk;
mod dns_cases;
mod fast_path;
mod support;
mod zone_updates;
