//! ferry-bench: the test origin that every ferry test and benchmark
//! downloads from ([`origin`]), and the load-test harness ([`harness`],
//! binary `ferry-bench`) that runs scenarios against the embedded engine or
//! a `ferry serve` daemon (`daemon.rs`), and draws a run ([`plot`]).

mod daemon;
pub mod harness;
pub mod origin;
pub mod plot;
