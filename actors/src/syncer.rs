//! `Syncer`: threads that write the last bytes of transfers whose body
//! arrived whole and make them durable, many files per journal commit.
//!
//! A transfer's end used to be one trip to the blocking pool per file:
//! write, fdatasync, answer. With many small files, dozens of pool threads
//! then each waited for its own journal commit and each woke its arbiter,
//! and the thread hand-offs, not the disk, bounded the rate.
//!
//! Here a *writer* thread (`ferry-write`) creates the temp file where asked,
//! writes the bytes and starts their writeback at once
//! (`posix_fadvise(DONTNEED)` over just the unsynced bytes: Linux starts
//! writing dirty pages back; a page already clean is dropped from the cache,
//! pages being written are kept), then passes the file on to the *sync*
//! threads (`ferry-sync`, [`SYNC_THREADS`] of them), which fdatasync the
//! files in about that order. On a journaling filesystem with delayed
//! allocation (ext4) the blocks of those files were allocated when their
//! writeback started, in the journal's running transaction, so one
//! commit covers every file written until then. Without the early
//! writeback, fdatasyncs each waited for a commit of their own (7 s
//! against 0.8 s for 2,000 files of 64 KiB in one measurement). Several
//! sync threads, because an fdatasync whose transaction is already
//! committed still flushes the device's cache: one thread would wait for
//! one flush per file, while the block layer merges the flushes of
//! fdatasyncs that run at once. The bytes never wait in memory for a
//! commit: the writer goes on while the sync threads wait. A busy thread
//! takes new work without a wake-up each. Each request gets its own answer
//! (its own error: one file's failed write fails only that file).
//!
//! The sync threads also carry the commit steps of file actors (publish,
//! delete: [`Syncer::run`]): a Complete of thousands of files hands them a
//! burst of short jobs, which a few busy threads take one after the other
//! without a wake-up each, where the blocking pool woke or started a
//! thread per file.
//!
//! Only the file actor that owns a temp file sends it here, and it awaits
//! the answer before it writes that file again or reports its end: the
//! syncer is the file actor's hand, not a second writer.

use std::{fs::File, path::PathBuf, sync::Arc, thread};

use crossbeam_channel as channel;

use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::{access::Access, fs};

/// Which file a request writes.
#[derive(Debug)]
pub(crate) enum Target {
    /// The transfer's open temp file.
    File(Arc<File>),
    /// A temp file the transfer has not opened yet: created (or cut back to
    /// nothing) first, as [`fs::open_temp`] from byte 0 does.
    Create(PathBuf),
}

impl Target {
    /// The file to write, opened (created) as `access` if need be.
    /// Blocking: on the syncer's or the blocking pool's threads only.
    pub(crate) fn open(&self, access: &Access) -> Result<Arc<File>, Failed> {
        match self {
            Self::File(file) => Ok(file.clone()),
            Self::Create(path) => fs::open_temp(access, path, 0)
                .map(|(file, _)| Arc::new(file))
                .map_err(Failed::Open),
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The temp file could not be created or opened.
    Open(std::io::Error),
    /// The write or the fdatasync failed.
    Write(std::io::Error),
}

/// Write `data` at `offset` into the target, then fdatasync it; its bytes
/// from `unsynced` on were not synced before.
struct Request {
    access: Access,
    target: Target,
    data: BytesMut,
    offset: u64,
    unsynced: u64,
    done: oneshot::Sender<Result<(), Failed>>,
}

/// fdatasyncs (or commit steps) that run at once.
const SYNC_THREADS: usize = 8;

/// Files in the syncer at once, engine-wide: each holds an open temp file
/// and maybe its last bytes (the per-job limit is the core's
/// `max_syncing_files`; this one bounds many jobs together).
const IN_FLIGHT: usize = 512;

/// Work for a sync thread.
type Work = Box<dyn FnOnce() + Send>;

/// A handle to the syncer's threads. Cloning gives another handle; the
/// threads end when the last handle is dropped, after the requests queued.
#[derive(Clone, Debug)]
pub(crate) struct Syncer {
    tx: channel::Sender<Request>,
    work: channel::Sender<Work>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Syncer {
    /// Starts the threads.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (tx, rx) = channel::unbounded::<Request>();
        let (work, work_rx) = channel::unbounded::<Work>();
        for _ in 0..SYNC_THREADS {
            let work_rx = work_rx.clone();
            thread::Builder::new()
                .name("ferry-sync".into())
                .spawn(move || {
                    while let Ok(work) = work_rx.recv() {
                        // A panic drops this work's answer (its waiter
                        // gets an error), not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                    }
                })?;
        }
        let synced = work.clone();
        thread::Builder::new()
            .name("ferry-write".into())
            .spawn(move || write(&rx, &synced))?;
        Ok(Self {
            tx,
            work,
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        })
    }

    /// Runs `work` on a sync thread (file work of a file actor, such as a
    /// commit step); resolves to its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let (done, answer) = oneshot::channel();
        self.work
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| std::io::Error::other("the sync threads have stopped"))?;
        answer
            .await
            .map_err(|_| std::io::Error::other("a sync thread dropped its work"))?
    }

    /// Writes `data` at `offset` into `target` as `access`, then
    /// fdatasyncs the file, whose bytes before `unsynced` are durable
    /// already; resolves once both are done.
    pub(crate) async fn write_and_sync(
        &self,
        access: Access,
        target: Target,
        data: BytesMut,
        offset: u64,
        unsynced: u64,
    ) -> Result<(), Failed> {
        // Waits for room (the file's transfer slot is free meanwhile).
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| Failed::Write(std::io::Error::other("the syncer has stopped")))?;
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Request {
                access,
                target,
                data,
                offset,
                unsynced,
                done,
            })
            .map_err(|_| Failed::Write(std::io::Error::other("the sync thread has stopped")))?;
        answer.await.map_err(|_| {
            Failed::Write(std::io::Error::other("the sync thread dropped a request"))
        })?
    }
}

/// The writer thread: each request as it comes. A panic drops that
/// request's answer (its waiter gets an error), not the thread.
fn write(rx: &channel::Receiver<Request>, synced: &channel::Sender<Work>) {
    // Blocks until a request comes; ends when every handle is gone.
    while let Ok(request) = rx.recv() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_one(request, synced);
        }));
    }
}

fn write_one(request: Request, synced: &channel::Sender<Work>) {
    // Tests hold the writes of files under a directory here.
    if let Target::Create(path) = &request.target {
        while crate::failpoint::active_for("syncer::hold", &path.to_string_lossy()) {
            thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let written = request.target.open(&request.access).and_then(|file| {
        if !request.data.is_empty() {
            fs::write_at(&request.access, &file, &request.data, request.offset)
                .map_err(Failed::Write)?;
        }
        // Advice only: if it fails, the fdatasync still syncs.
        let _ = rustix::fs::fadvise(&*file, request.unsynced, None, rustix::fs::Advice::DontNeed);
        Ok(file)
    });
    match written {
        Ok(file) => {
            let done = request.done;
            // If the sync threads are gone, the dropped answer says so.
            let _ = synced.send(Box::new(move || {
                let _ = done.send(file.sync_data().map_err(Failed::Write));
            }));
        }
        // The transfer may have gone away (its actor stopped): nobody
        // waits for this answer then.
        Err(failed) => {
            let _ = request.done.send(Err(failed));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::os::unix::fs::FileExt as _;

    use super::*;

    #[actix_rt::test]
    async fn writes_many_files_and_answers_each() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start().unwrap();
        let mut waits = Vec::new();
        let mut files = Vec::new();
        for i in 0..40u8 {
            let path = dir.path().join(format!("f{i}"));
            let file = Arc::new(File::create(&path).unwrap());
            file.write_all_at(&[i; 3], 0).unwrap();
            files.push((path, i));
            let data = BytesMut::from(&[i; 5][..]);
            waits.push(syncer.write_and_sync(Access::engine(), Target::File(file), data, 3, 0));
        }
        for result in futures_util::future::join_all(waits).await {
            assert!(result.is_ok(), "{result:?}");
        }
        for (path, i) in files {
            assert_eq!(std::fs::read(path).unwrap(), vec![i; 8]);
        }
    }

    #[actix_rt::test]
    async fn more_requests_than_the_limit_all_finish() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start().unwrap();
        let waits = (0..IN_FLIGHT + 20).map(|i| {
            let target = Target::Create(dir.path().join(format!("f{i}")));
            syncer.write_and_sync(Access::engine(), target, BytesMut::from(&b"x"[..]), 0, 0)
        });
        let results = futures_util::future::join_all(waits).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(syncer.in_flight.available_permits(), IN_FLIGHT);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            IN_FLIGHT + 20
        );
    }

    #[actix_rt::test]
    async fn a_failed_write_fails_only_its_own_request() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start().unwrap();
        let good = Arc::new(File::create(dir.path().join("good")).unwrap());
        // Opened read-only: its write fails.
        let bad_path = dir.path().join("bad");
        std::fs::write(&bad_path, b"").unwrap();
        let bad = Arc::new(File::open(&bad_path).unwrap());
        let (a, b) = futures_util::future::join(
            syncer.write_and_sync(
                Access::engine(),
                Target::File(bad),
                BytesMut::from(&b"x"[..]),
                0,
                0,
            ),
            syncer.write_and_sync(
                Access::engine(),
                Target::File(good),
                BytesMut::from(&b"ok"[..]),
                0,
                0,
            ),
        )
        .await;
        assert!(matches!(a, Err(Failed::Write(_))), "{a:?}");
        assert!(b.is_ok(), "{b:?}");
        assert_eq!(std::fs::read(dir.path().join("good")).unwrap(), b"ok");
        assert_eq!(std::fs::read(bad_path).unwrap(), b"");
    }

    #[actix_rt::test]
    async fn creates_a_temp_file_or_cuts_an_old_one_back() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start().unwrap();
        let new = dir.path().join("new");
        let old = dir.path().join("old");
        std::fs::write(&old, b"stale bytes of an earlier attempt").unwrap();
        let missing_dir = dir.path().join("gone").join("f");
        let (a, b, c) = futures_util::future::join3(
            syncer.write_and_sync(
                Access::engine(),
                Target::Create(new.clone()),
                BytesMut::from(&b"fresh"[..]),
                0,
                0,
            ),
            syncer.write_and_sync(
                Access::engine(),
                Target::Create(old.clone()),
                BytesMut::from(&b"new"[..]),
                0,
                0,
            ),
            syncer.write_and_sync(
                Access::engine(),
                Target::Create(missing_dir.clone()),
                BytesMut::from(&b"x"[..]),
                0,
                0,
            ),
        )
        .await;
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        assert!(matches!(c, Err(Failed::Open(_))), "{c:?}");
        assert_eq!(std::fs::read(new).unwrap(), b"fresh");
        assert_eq!(std::fs::read(old).unwrap(), b"new");
        assert!(!missing_dir.exists());
    }
}
