//! Scenario tests of the job model: each test is a script in the DSL of
//! `dsl.rs` and the transcript it must produce. Regenerate transcripts with
//! `UPDATE_EXPECT=1 cargo test --test scenarios`, then read the diff: the
//! transcripts are the specification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod dsl;

mod complete;
mod lifecycle;
mod table;
mod timers;
mod transfers;

#[track_caller]
fn check(script: &str, expect: expect_test::Expect) {
    expect.assert_eq(&dsl::run(script));
}
