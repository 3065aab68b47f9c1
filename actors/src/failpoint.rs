//! Crash points for tests (cargo feature `failpoints`, with the `fail`
//! crate). Without the feature every point compiles to nothing.
//!
//! `FAILPOINTS=commit::between_renames=return` (or `fail::cfg` in-process)
//! makes the named point **abort the process** (no unwinding, no cleanup:
//! the same as SIGKILL for what reaches the disk), so crash tests can stop the
//! engine between the durable steps of a commit; with `FERRY_FAILPOINT_WAIT`
//! set, the point prints `FAILPOINT <name>` and waits for the test to SIGKILL
//! the process. Points: `commit::before_intent`, `commit::before_publish`,
//! `commit::between_renames`, `commit::before_outcome`. `fs::delete=return`
//! makes deletes of temp files that exist fail instead; `file::final_write=return(NAME)`
//! makes the last write of a whole body fail (after `Drained`) for files
//! whose URL contains NAME; `file::write=return(NAME)` makes the writes
//! of a body from its 2 MiB on fail (while it is read on) for files whose
//! URL contains NAME; `file::slow_checkpoint=return(NAME)` makes the
//! checkpoint fdatasyncs of such files take a quarter second more (a busy
//! disk); `file::inline_write=return(NAME)` makes the writes of what
//! arrived before a pause or a break of the body fail for such files;
//! `syncer::hold=return(PATH)` holds the syncer's
//! writer before it creates a temp file whose path contains PATH, until the
//! point is removed.

/// Aborts the process if the point `name` is configured.
pub(crate) fn crash(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        if fail::eval(name, |_| ()).is_some() {
            if std::env::var_os("FERRY_FAILPOINT_WAIT").is_some() {
                // Say where we are and wait to be killed (SIGKILL tests).
                use std::io::Write as _;
                let mut out = std::io::stdout();
                let _ = writeln!(out, "FAILPOINT {name}");
                let _ = out.flush();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            tracing::warn!(message = "Failpoint hit: aborting.", name);
            std::process::abort();
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Whether the point `name` is configured with an argument that `subject`
/// contains (injected errors aimed at one file).
pub(crate) fn active_for(name: &str, subject: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |arg| arg)
            .flatten()
            .is_some_and(|arg| subject.contains(&arg))
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (name, subject);
        false
    }
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
