//! Integration tests of the engine: real HTTP over loopback against the test
//! origin, a real RocksDB in a temp dir, real files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod util;

mod api;
mod commit;
mod errors;
mod input;
mod restart;
mod transfer;
