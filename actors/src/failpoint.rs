//! Crash points for tests (cargo feature `failpoints`, with the `fail`
//! crate). Without the feature every point compiles to nothing.
//!
//! `FAILPOINTS=commit::between_renames=return` (or `fail::cfg` in-process)
//! makes the named point **abort the process** (no unwinding, no cleanup:
//! the same as SIGKILL for what reaches the disk), so crash tests can stop the
//! engine between the durable steps of a commit. `fs::delete=return` makes
//! temp-file deletes fail instead.

/// Aborts the process if the point `name` is configured.
pub(crate) fn crash(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        if fail::eval(name, |_| ()).is_some() {
            tracing::warn!(message = "Failpoint hit: aborting.", name);
            std::process::abort();
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Whether the point `name` is configured (for injected errors).
pub(crate) fn active(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |_| ()).is_some()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}
