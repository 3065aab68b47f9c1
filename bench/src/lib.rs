//! ferry-bench: the test origin that every ferry test and benchmark downloads
//! from ([`origin`]), and (in a later issue) the load-test harness.

pub mod origin;
