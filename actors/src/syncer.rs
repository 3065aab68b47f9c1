//! `Syncer`: threads that write the last bytes of transfers whose body
//! arrived whole and make them durable, many files per journal commit.
//!
//! A transfer's end used to be one trip to the blocking pool per file:
//! write, fdatasync, answer. With many small files, dozens of pool threads
//! then each waited for its own journal commit and each woke its arbiter,
//! and the thread hand-offs, not the disk, bounded the rate.
//!
//! Here a *writer* thread (`ferry-write`) creates the temp file where asked,
//! writes the bytes and gives the file the server's modification time (so
//! that it is durable with the bytes, and Complete only renames), then
//! passes the file on to the *batcher*
//! (`ferry-durable`), which makes durable at once every file waiting:
//!
//! - **Many files it created on one filesystem** (at least `syncfs_batch`,
//!   the ends of small bodies): one `syncfs`, which writes them all back in
//!   one sweep and commits them in one journal transaction with one device
//!   flush, the way `sync` after `curl` does. Only where a syncfs is as
//!   strong as an fdatasync and says so when it is not: ext4, XFS or btrfs,
//!   writable, on Linux 5.17 or later (5.8 made syncfs report writeback
//!   errors, 5.17 the filesystem's own commit errors; FUSE, vfat or
//!   overlayfs may sync less than an fdatasync would). Errors are not lost:
//!   a writeback error of any file on that filesystem since the group's
//!   first file was opened (the others were opened after it, by the same
//!   thread) makes the `syncfs` fail, and so does a failed commit; then,
//!   or if the filesystem turned read-only meanwhile, the group falls back
//!   to one fdatasync per file, each with its own answer. A syncfs slower
//!   than [`SLOW_SYNCFS`] (a busy filesystem: it writes back other
//!   programs' dirty data too) sends that filesystem's files to fdatasyncs,
//!   which write only their own data, for [`SLOW_FOR`].
//! - **Otherwise** (a few files, other filesystems, or files the transfer
//!   opened itself, whose earlier errors a `syncfs` through another file
//!   would not see): their
//!   writeback is started at once (`posix_fadvise(DONTNEED)` over the
//!   unsynced bytes: Linux starts writing dirty pages back, drops pages
//!   already clean and keeps those being written), and the *sync* threads
//!   (`ferry-sync`, [`SYNC_THREADS`] of them) fdatasync them. On a
//!   journaling filesystem with delayed allocation (ext4) the blocks of
//!   those files were allocated when their writeback started, in the
//!   journal's running transaction, so one commit covers them all. Without
//!   the early writeback, fdatasyncs each waited for a commit of their own
//!   (7 s against 0.8 s for 2,000 files of 64 KiB in one measurement).
//!   Several sync threads, because an fdatasync whose transaction is
//!   already committed still flushes the device's cache: one thread would
//!   wait for one flush per file, while the block layer merges the flushes
//!   of fdatasyncs that run at once.
//!
//! The syncfs and the fdatasyncs run on the sync threads; the batcher waits
//! for a batch to be durable (up to [`BATCH_WAIT`], so that one slow
//! filesystem does not hold the others) before it takes the next, so under
//! load the next batch gathers meanwhile: a group commit. For 2,000 files
//! of 64 KiB that took 0.64 s where one fdatasync each took 0.73 s, with a
//! sixth less CPU (RESULTS.md). The bytes never wait in memory for a
//! commit: the writer goes on while the batcher waits. Each request gets
//! its own answer (its own error: one file's failed write fails only that
//! file).
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

use std::{
    fs::File,
    path::PathBuf,
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use crossbeam_channel as channel;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use crate::{access::Access, chunks::Gathered, fs};

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

    /// The file, opened as [`Target::open`] does, with `data` (maybe
    /// nothing) written at `offset`. Blocking, likewise.
    pub(crate) fn write(
        &self,
        access: &Access,
        data: &Gathered,
        offset: u64,
    ) -> Result<Arc<File>, Failed> {
        let file = self.open(access)?;
        if !data.is_empty() {
            fs::write_at(access, &file, data, offset).map_err(Failed::Write)?;
        }
        Ok(file)
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

/// Write `data` at `offset` into the target, give it `modified` as its
/// modification time, then fdatasync it (fsync if it got a time); its
/// bytes from `unsynced` on were not synced before.
struct Request {
    access: Access,
    target: Target,
    data: Gathered,
    offset: u64,
    unsynced: u64,
    modified: Option<SystemTime>,
    done: oneshot::Sender<Result<(), Failed>>,
    /// Its place among the files not written yet ([`UNWRITTEN`]), given
    /// back with `data` once the write is done.
    place: tokio::sync::OwnedSemaphorePermit,
}

/// fdatasyncs, syncfs batches or commit steps that run at once. 4 rather
/// than 8 since the batches: each idle thread spins a little before it
/// sleeps, and on 2 cores 8 of them cost more than they gave (2,000 files
/// of 64 KiB: 0.60 s against 0.57 s and 0.85 s against 0.78 s in
/// `bench/ab.sh`; no change on 64 x 16 MiB or on Complete).
const SYNC_THREADS: usize = 4;

/// Files in the syncer at once, engine-wide, at most: each holds an open
/// temp file until it is durable (the per-job limit is the core's
/// `max_syncing_files`; this one bounds many jobs together). Fewer if the
/// process may open few files: a quarter of its open-file limit, and at
/// least [`UNWRITTEN`] (see [`open_limit`]).
const IN_FLIGHT: usize = 4096;

/// Files in the syncer whose last bytes are not written yet, engine-wide:
/// each holds those bytes in memory. A file leaves this count once the
/// writer has written it, so the files waiting for a slow disk's commit
/// hold an open file each, not their bytes.
const UNWRITTEN: usize = 512;

/// How many files the syncer keeps open at once: [`IN_FLIGHT`], or a
/// quarter of the soft open-file limit if that is less (an embedder's
/// process may have 1,024), but never below [`UNWRITTEN`].
fn open_limit() -> usize {
    open_limit_for(rustix::process::getrlimit(rustix::process::Resource::Nofile).current)
}

/// [`open_limit`] for a soft open-file limit (`None`: unlimited).
fn open_limit_for(soft: Option<u64>) -> usize {
    let soft = soft.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    (soft / 4).clamp(UNWRITTEN, IN_FLIGHT)
}

/// Work for a sync thread.
type Work = Box<dyn FnOnce() + Send>;

/// A file written, to be made durable.
struct Written {
    file: Arc<File>,
    /// Created (opened) by the writer thread, in request order.
    created: bool,
    /// Its bytes from here on were not synced before.
    unsynced: u64,
    /// Its modification time was set: an fsync, not an fdatasync, makes
    /// it durable.
    timed: bool,
    done: oneshot::Sender<Result<(), Failed>>,
}

/// A handle to the syncer's threads. Cloning gives another handle; the
/// threads end when the last handle is dropped, after the requests queued.
#[derive(Clone, Debug)]
pub(crate) struct Syncer {
    tx: channel::Sender<Request>,
    work: channel::Sender<Work>,
    /// Files in the syncer (an open file each), up to [`open_limit`].
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Files whose bytes wait for the writer, up to [`UNWRITTEN`].
    unwritten: Arc<tokio::sync::Semaphore>,
}

impl Syncer {
    /// Starts the threads; from `syncfs_batch` files created and waiting at
    /// once (0: never), one syncfs makes them durable.
    /// Counts those batches in `syncfs_batches`.
    pub(crate) fn start(syncfs_batch: usize, syncfs_batches: Counter) -> std::io::Result<Self> {
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
        let (written, written_rx) = channel::unbounded::<Written>();
        let batcher = Batcher::new(work.clone(), syncfs_batch, syncfs_batches);
        thread::Builder::new()
            .name("ferry-durable".into())
            .spawn(move || batcher.run(&written_rx))?;
        thread::Builder::new()
            .name("ferry-write".into())
            .spawn(move || write(&rx, &written))?;
        Ok(Self {
            tx,
            work,
            in_flight: Arc::new(tokio::sync::Semaphore::new(open_limit())),
            unwritten: Arc::new(tokio::sync::Semaphore::new(UNWRITTEN)),
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

    /// A place among the files whose last bytes wait for the writer (up to
    /// [`UNWRITTEN`]): a transfer takes one before it gives up its slot, so
    /// a writer that falls behind the network (a disk slower than the
    /// downloads) holds new transfers back instead of letting bodies pile
    /// up in memory. Given back once the writer has written the bytes.
    pub(crate) async fn reserve(&self) -> Result<Reserved, Failed> {
        let permit = self
            .unwritten
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| stopped())?;
        Ok(Reserved {
            syncer: self.clone(),
            permit,
        })
    }

    /// A place reserved, then [`Reserved::write_and_sync`] (transfers
    /// reserve theirs before they give up their slots).
    #[cfg(test)]
    pub(crate) async fn write_and_sync(
        &self,
        access: Access,
        target: Target,
        data: Gathered,
        offset: u64,
        unsynced: u64,
        modified: Option<SystemTime>,
    ) -> Result<(), Failed> {
        self.reserve()
            .await?
            .write_and_sync(access, target, data, offset, unsynced, modified)
            .await
    }
}

/// The error of a request to a syncer whose semaphores were closed.
fn stopped() -> Failed {
    Failed::Write(std::io::Error::other("the syncer has stopped"))
}

/// A place among the files whose bytes wait for the writer
/// ([`Syncer::reserve`]).
#[derive(Debug)]
pub(crate) struct Reserved {
    syncer: Syncer,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Reserved {
    /// Writes `data` at `offset` into `target` as `access`, gives the file
    /// `modified` as its modification time (if that fails, Complete sets it
    /// again and reports it), then makes it durable (its bytes before
    /// `unsynced` are already); resolves once all is done. The place goes
    /// back once the bytes are written.
    pub(crate) async fn write_and_sync(
        self,
        access: Access,
        target: Target,
        data: Gathered,
        offset: u64,
        unsynced: u64,
        modified: Option<SystemTime>,
    ) -> Result<(), Failed> {
        let Self { syncer, permit } = self;
        // Waits for room among the open files (the file's transfer slot is
        // free meanwhile), held until the answer.
        let _open = syncer.in_flight.acquire().await.map_err(|_| stopped())?;
        let (done, answer) = oneshot::channel();
        syncer
            .tx
            .send(Request {
                access,
                target,
                data,
                offset,
                unsynced,
                modified,
                done,
                place: permit,
            })
            .map_err(|_| Failed::Write(std::io::Error::other("the sync thread has stopped")))?;
        answer.await.map_err(|_| {
            Failed::Write(std::io::Error::other("the sync thread dropped a request"))
        })?
    }
}

/// The writer thread: each request as it comes. A panic drops that
/// request's answer (its waiter gets an error), not the thread.
fn write(rx: &channel::Receiver<Request>, written: &channel::Sender<Written>) {
    // Blocks until a request comes; ends when every handle is gone.
    while let Ok(request) = rx.recv() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_one(request, written);
        }));
    }
}

fn write_one(request: Request, written: &channel::Sender<Written>) {
    // Tests hold the writes of files under a directory here.
    if let Target::Create(path) = &request.target {
        while crate::failpoint::active_for("syncer::hold", &path.to_string_lossy()) {
            thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let created = matches!(request.target, Target::Create(_));
    let wrote = request
        .target
        .write(&request.access, &request.data, request.offset);
    // The bytes are in the file (or failed to get there): their memory and
    // their place go back now, not once the file is durable.
    drop(request.data);
    drop(request.place);
    match wrote {
        Ok(file) => {
            // After the last write (a write would change it again), as
            // the owner, like the write: the engine's rights are used on a
            // job's file only once it is checked to be the owner's own
            // (at publish), and this may be a link the user planted.
            let timed = request.modified.is_some_and(|time| {
                request
                    .access
                    .enter()
                    .is_ok_and(|_as| file.set_modified(time).is_ok())
            });
            let file = Written {
                file,
                created,
                unsynced: request.unsynced,
                timed,
                done: request.done,
            };
            // A file its transfer opened is fdatasynced on its own: its
            // writeback starts at once, while it waits for the batcher.
            if !created {
                file.start_writeback();
            }
            // If the batcher is gone, the dropped answer says so.
            let _ = written.send(file);
        }
        // The transfer may have gone away (its actor stopped): nobody
        // waits for this answer then.
        Err(failed) => {
            let _ = request.done.send(Err(failed));
        }
    }
}

/// How long the batcher waits for a batch to be durable before it takes
/// the next one anyway: long enough for the next batch to gather under
/// load, short enough that one slow filesystem (a hung fdatasync, a syncfs
/// that writes back another program's gigabytes) holds the others back no
/// longer.
const BATCH_WAIT: Duration = Duration::from_millis(100);

/// The filesystems whose syncfs makes data as durable as fdatasync does and
/// reports their writeback errors: ext4, XFS, btrfs (`statfs` magic).
/// Others (FUSE, vfat, overlayfs, NFS...) get one fdatasync per file.
const SYNCFS_FILESYSTEMS: [u64; 3] = [0xEF53, 0x5846_5342, 0x9123_683E];

/// A syncfs slower than this (other programs' dirty data to write back, on
/// a busy filesystem) sends its filesystem's files to fdatasyncs, which
/// write only their own data, for [`SLOW_FOR`].
const SLOW_SYNCFS: Duration = Duration::from_millis(500);
const SLOW_FOR: Duration = Duration::from_secs(60);

/// Filesystems (`st_dev`) whose last syncfs was slow, and until when.
type Slow = Arc<std::sync::Mutex<Vec<(u64, Instant)>>>;

/// The batcher thread: makes written files durable, every file waiting at
/// once (see the module's doc).
struct Batcher {
    work: channel::Sender<Work>,
    /// Files of one filesystem from which one syncfs replaces their
    /// fdatasyncs (0: never).
    syncfs_batch: usize,
    syncfs_batches: Counter,
    /// Linux 5.17 or later: syncfs reports writeback errors (5.8) and the
    /// filesystem's own commit errors (5.17); before, it may not.
    syncfs_reports_errors: bool,
    /// The syncfs call (tests make it fail).
    syncfs: fn(&File) -> std::io::Result<()>,
    slow: Slow,
    /// [`SLOW_SYNCFS`] (tests lower it).
    slow_syncfs: Duration,
}

impl Batcher {
    fn new(work: channel::Sender<Work>, syncfs_batch: usize, syncfs_batches: Counter) -> Self {
        Self {
            work,
            syncfs_batch,
            syncfs_batches,
            syncfs_reports_errors: kernel_at_least(5, 17),
            syncfs: |file| rustix::fs::syncfs(file).map_err(std::io::Error::from),
            slow: Slow::default(),
            slow_syncfs: SLOW_SYNCFS,
        }
    }

    /// Whether the filesystem `dev` had a slow syncfs lately.
    fn is_slow(&self, dev: u64) -> bool {
        let mut slow = self
            .slow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        slow.retain(|(_, until)| *until > now);
        slow.iter().any(|(d, _)| *d == dev)
    }

    fn run(&self, rx: &channel::Receiver<Written>) {
        // Blocks until a file comes; ends when the writer is gone.
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            // A panic drops the answers of this batch (their waiters get
            // errors), not the thread.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.make_durable(batch);
            }));
        }
    }

    /// Has every file of `batch` made durable (or failed) and answered, on
    /// the sync threads; returns when all are, or after [`BATCH_WAIT`].
    fn make_durable(&self, batch: Vec<Written>) {
        let (created, mut each): (Vec<Written>, Vec<Written>) =
            batch.into_iter().partition(|w| w.created);
        // By filesystem, in request order: a group's first file was opened
        // before the others.
        let mut groups: Vec<(u64, Vec<Written>)> = Vec::new();
        if self.syncfs_batch > 0 && self.syncfs_reports_errors && created.len() >= self.syncfs_batch
        {
            for written in created {
                let Ok(stat) = rustix::fs::fstat(&*written.file) else {
                    each.push(written);
                    continue;
                };
                let dev = stat.st_dev;
                match groups.iter_mut().find(|(d, _)| *d == dev) {
                    Some((_, group)) => group.push(written),
                    None => groups.push((dev, vec![written])),
                }
            }
        } else {
            each.extend(created);
        }
        let (finished, wait) = channel::unbounded::<()>();
        let mut sent = 0;
        for (dev, group) in groups {
            let Some(first) = group.first() else {
                continue;
            };
            if group.len() < self.syncfs_batch
                || self.is_slow(dev)
                || !syncfs_is_enough(&first.file)
            {
                each.extend(group);
                continue;
            }
            let (syncfs, counter, finished) =
                (self.syncfs, self.syncfs_batches.clone(), finished.clone());
            let (slow, slow_syncfs) = (self.slow.clone(), self.slow_syncfs);
            sent += 1;
            // If the sync threads are gone, the dropped answers say so.
            let _ = self.work.send(Box::new(move || {
                let started = Instant::now();
                sync_group(group, syncfs, &counter);
                let took = started.elapsed();
                if took > slow_syncfs {
                    tracing::info!(
                        message = "A batch syncfs was slow: this filesystem's files get fdatasyncs for a while.",
                        dev,
                        took_ms = took.as_millis()
                    );
                    let mut slow = slow.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    slow.retain(|(d, _)| *d != dev);
                    slow.push((dev, Instant::now() + SLOW_FOR));
                }
                let _ = finished.send(());
            }));
        }
        for written in each {
            if written.created {
                // Started now for the files the writer left to us (their
                // blocks join the running journal transaction together).
                written.start_writeback();
            }
            let finished = finished.clone();
            sent += 1;
            let _ = self.work.send(Box::new(move || {
                written.sync();
                let _ = finished.send(());
            }));
        }
        drop(finished);
        let deadline = Instant::now() + BATCH_WAIT;
        for _ in 0..sent {
            // Also ends when every work item has run or was dropped.
            if wait.recv_deadline(deadline).is_err() {
                break;
            }
        }
    }
}

/// Makes a group of files of one filesystem durable by one syncfs through
/// its first file (opened before the others), and answers each; if the
/// syncfs fails or the filesystem turned read-only meanwhile (a syncfs then
/// writes nothing and says nothing), one fdatasync each, with its own
/// answer.
fn sync_group(group: Vec<Written>, syncfs: fn(&File) -> std::io::Result<()>, counter: &Counter) {
    let synced = group
        .first()
        .is_some_and(|first| syncfs(&first.file).is_ok() && !read_only(&first.file));
    if synced {
        counter.inc();
        for written in group {
            let _ = written.done.send(Ok(()));
        }
        return;
    }
    for written in group {
        written.sync();
    }
}

/// Whether one syncfs through `file` makes data durable as fdatasync would:
/// a filesystem of [`SYNCFS_FILESYSTEMS`], writable.
fn syncfs_is_enough(file: &File) -> bool {
    rustix::fs::fstatfs(file)
        .is_ok_and(|stat| u64::try_from(stat.f_type).is_ok_and(|t| SYNCFS_FILESYSTEMS.contains(&t)))
        && !read_only(file)
}

fn read_only(file: &File) -> bool {
    rustix::fs::fstatvfs(file).map_or(true, |stat| {
        stat.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)
    })
}

impl Written {
    /// Starts the writeback of its unsynced bytes.
    fn start_writeback(&self) {
        fs::start_writeback(&self.file, self.unsynced);
    }

    /// fdatasyncs it (fsyncs it if its time was set) and answers.
    fn sync(self) {
        let synced = if self.timed {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        };
        let _ = self.done.send(synced.map_err(Failed::Write));
    }
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::os::unix::fs::FileExt as _;

    use super::*;

    #[actix_rt::test]
    async fn writes_many_files_and_answers_each() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start(8, Counter::default()).unwrap();
        let mut waits = Vec::new();
        let mut files = Vec::new();
        for i in 0..40u8 {
            let path = dir.path().join(format!("f{i}"));
            let file = Arc::new(File::create(&path).unwrap());
            file.write_all_at(&[i; 3], 0).unwrap();
            files.push((path, i));
            let data = Gathered::from(&[i; 5][..]);
            // Every other file gets the server's time with its last bytes.
            let modified = (i % 2 == 0).then(|| time_of(i));
            waits.push(syncer.write_and_sync(
                Access::engine(),
                Target::File(file),
                data,
                3,
                0,
                modified,
            ));
        }
        // And files the writer creates (the batched ends of small bodies).
        for i in 40..80u8 {
            let path = dir.path().join(format!("f{i}"));
            files.push((path.clone(), i));
            let modified = (i % 2 == 0).then(|| time_of(i));
            waits.push(syncer.write_and_sync(
                Access::engine(),
                Target::Create(path),
                Gathered::from(&[i; 8][..]),
                0,
                0,
                modified,
            ));
        }
        for result in futures_util::future::join_all(waits).await {
            assert!(result.is_ok(), "{result:?}");
        }
        for (path, i) in files {
            assert_eq!(std::fs::read(&path).unwrap(), vec![i; 8]);
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            if i % 2 == 0 {
                assert_eq!(mtime, time_of(i), "{}", path.display());
            } else {
                assert!(mtime > time_of(u8::MAX), "{}", path.display());
            }
        }
    }

    #[actix_rt::test]
    async fn a_time_is_set_as_the_owner_never_on_a_file_it_does_not_own() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: acting as another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        // Root's file that anyone may write, at a temp file's name (as a
        // hard link planted there would be).
        let planted = dir.path().join("planted");
        std::fs::write(&planted, b"root's").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        let own = dir.path().join("own");
        let identities: Arc<dyn crate::access::Identities> = Arc::new(crate::access::Nobody);
        let access = Access::of(Some(&identities), "nobody", &Arc::default());
        let syncer = Syncer::start(8, Counter::default()).unwrap();
        let (a, b) = futures_util::future::join(
            syncer.write_and_sync(
                access.clone(),
                Target::Create(planted.clone()),
                Gathered::from(&b"x"[..]),
                0,
                0,
                Some(time_of(1)),
            ),
            syncer.write_and_sync(
                access,
                Target::Create(own.clone()),
                Gathered::from(&b"y"[..]),
                0,
                0,
                Some(time_of(2)),
            ),
        )
        .await;
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        // The user may write it (its mode says so), not set its time.
        assert_eq!(std::fs::read(&planted).unwrap(), b"x");
        let planted_meta = std::fs::metadata(&planted).unwrap();
        assert_eq!(planted_meta.uid(), 0);
        assert_ne!(planted_meta.modified().unwrap(), time_of(1));
        let own_meta = std::fs::metadata(&own).unwrap();
        assert_eq!(own_meta.uid(), 65534);
        assert_eq!(own_meta.modified().unwrap(), time_of(2));
    }

    /// A server time in 2001, `i` days apart.
    fn time_of(i: u8) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(978_307_200 + u64::from(i) * 86_400)
    }

    /// A batcher whose work runs on one sync thread of its own.
    fn batcher(syncfs_batch: usize) -> Batcher {
        let (work, work_rx) = channel::unbounded::<Work>();
        thread::spawn(move || {
            while let Ok(work) = work_rx.recv() {
                work();
            }
        });
        Batcher::new(work, syncfs_batch, Counter::default())
    }

    /// Whether a syncfs batch can happen in `dir` on this machine.
    fn syncfs_applies(dir: &std::path::Path) -> bool {
        let file = File::create(dir.join("probe")).unwrap();
        kernel_at_least(5, 17) && syncfs_is_enough(&file)
    }

    /// Waits for every answer (the batcher may return before its work ran).
    fn answers(answers: Vec<oneshot::Receiver<Result<(), Failed>>>) -> Vec<bool> {
        answers
            .into_iter()
            .map(|a| matches!(a.blocking_recv(), Ok(Ok(()))))
            .collect()
    }

    /// `n` files written in `dir` as the writer would hand them over, and
    /// the receivers of their answers.
    fn written(
        dir: &std::path::Path,
        n: usize,
        created: bool,
    ) -> (Vec<Written>, Vec<oneshot::Receiver<Result<(), Failed>>>) {
        (0..n)
            .map(|i| {
                let file = File::create(dir.join(format!("{created}-{i}"))).unwrap();
                file.write_all_at(b"bytes", 0).unwrap();
                let (done, answer) = oneshot::channel();
                let written = Written {
                    file: Arc::new(file),
                    created,
                    unsynced: 0,
                    timed: false,
                    done,
                };
                (written, answer)
            })
            .unzip()
    }

    #[test]
    fn enough_created_files_share_one_syncfs_and_others_are_synced_each() {
        let dir = tempfile::tempdir().unwrap();
        let batcher = batcher(8);
        // 7 created files and 5 opened by their transfers: no syncfs.
        let (mut batch, mut waits) = written(dir.path(), 7, true);
        let (opened, opened_waits) = written(dir.path(), 5, false);
        batch.extend(opened);
        waits.extend(opened_waits);
        batcher.make_durable(batch);
        assert_eq!(answers(waits), vec![true; 12]);
        assert_eq!(batcher.syncfs_batches.get(), 0);
        // 8 created ones: one syncfs for them (same filesystem), where
        // syncfs is enough (ext4, XFS or btrfs on Linux 5.17 or later; the
        // temp dir here is ext4); the opened ones still each get their
        // fdatasync.
        let dir = tempfile::tempdir().unwrap();
        let expected = u64::from(syncfs_applies(dir.path()));
        let (mut batch, mut waits) = written(dir.path(), 8, true);
        let (opened, opened_waits) = written(dir.path(), 2, false);
        batch.extend(opened);
        waits.extend(opened_waits);
        batcher.make_durable(batch);
        assert_eq!(answers(waits), vec![true; 10]);
        assert_eq!(batcher.syncfs_batches.get(), expected);
        // 0: never.
        let never = self::batcher(0);
        let (batch, waits) = written(dir.path(), 20, true);
        never.make_durable(batch);
        assert_eq!(answers(waits), vec![true; 20]);
        assert_eq!(never.syncfs_batches.get(), 0);
    }

    #[test]
    fn a_failed_syncfs_falls_back_to_one_fdatasync_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut batcher = batcher(4);
        batcher.syncfs = |_| Err(std::io::Error::other("injected"));
        let (batch, waits) = written(dir.path(), 10, true);
        batcher.make_durable(batch);
        assert_eq!(answers(waits), vec![true; 10]);
        assert_eq!(batcher.syncfs_batches.get(), 0);
    }

    #[test]
    fn a_slow_syncfs_sends_its_filesystem_to_fdatasyncs() {
        let dir = tempfile::tempdir().unwrap();
        let expected = u64::from(syncfs_applies(dir.path()));
        let mut batcher = batcher(8);
        // Every syncfs counts as slow.
        batcher.slow_syncfs = Duration::ZERO;
        let (batch, waits) = written(dir.path(), 8, true);
        batcher.make_durable(batch);
        assert_eq!(answers(waits), vec![true; 8]);
        assert_eq!(batcher.syncfs_batches.get(), expected);
        // The next batch of that filesystem: one fdatasync each.
        let second = dir.path().join("second");
        std::fs::create_dir(&second).unwrap();
        let (batch, waits) = written(&second, 10, true);
        batcher.make_durable(batch);
        assert_eq!(answers(waits), vec![true; 10]);
        assert_eq!(batcher.syncfs_batches.get(), expected);
    }

    #[test]
    fn kernel_versions_compare_by_number() {
        assert!(kernel_at_least(2, 6));
        assert!(!kernel_at_least(99, 0));
    }

    #[actix_rt::test]
    async fn more_requests_than_the_limit_all_finish() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start(8, Counter::default()).unwrap();
        let limit = syncer.in_flight.available_permits();
        assert!((UNWRITTEN..=IN_FLIGHT).contains(&limit), "{limit}");
        let waits = (0..limit + 20).map(|i| {
            let target = Target::Create(dir.path().join(format!("f{i}")));
            syncer.write_and_sync(
                Access::engine(),
                target,
                Gathered::from(&b"x"[..]),
                0,
                0,
                None,
            )
        });
        let results = futures_util::future::join_all(waits).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(syncer.in_flight.available_permits(), limit);
        assert_eq!(syncer.unwritten.available_permits(), UNWRITTEN);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), limit + 20);
    }

    #[test]
    fn the_open_files_follow_the_open_file_limit() {
        // A quarter of the limit, between the two bounds.
        assert_eq!(open_limit_for(Some(8192)), 2048);
        assert_eq!(open_limit_for(Some(1024)), UNWRITTEN);
        assert_eq!(open_limit_for(Some(64)), UNWRITTEN);
        assert_eq!(open_limit_for(Some(1 << 20)), IN_FLIGHT);
        assert_eq!(open_limit_for(None), IN_FLIGHT);
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        assert_eq!(open_limit(), open_limit_for(soft));
    }

    #[actix_rt::test]
    async fn a_written_file_gives_back_its_place_before_it_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start(8, Counter::default()).unwrap();
        // Every sync thread busy until told: no file can be made durable.
        let (go, wait) = channel::unbounded::<()>();
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let blockers: Vec<_> = (0..SYNC_THREADS)
            .map(|_| {
                let (wait, busy, syncer) = (wait.clone(), busy.clone(), syncer.clone());
                actix_rt::spawn(async move {
                    syncer
                        .run(move || {
                            busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let _ = wait.recv();
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while busy.load(std::sync::atomic::Ordering::SeqCst) < SYNC_THREADS {
            assert!(Instant::now() < deadline, "the sync threads never got busy");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        let files = 40;
        let writes: Vec<_> = (0..files)
            .map(|i| {
                let syncer = syncer.clone();
                let target = Target::Create(dir.path().join(format!("f{i}")));
                actix_rt::spawn(async move {
                    syncer
                        .write_and_sync(
                            Access::engine(),
                            target,
                            Gathered::from(&[7u8; 4096][..]),
                            0,
                            0,
                            None,
                        )
                        .await
                })
            })
            .collect();
        // The writer writes them all and gives their places back, while
        // they all still wait for their commit (and hold an open file).
        let written = || {
            (0..files)
                .filter(|i| {
                    std::fs::metadata(dir.path().join(format!("f{i}")))
                        .is_ok_and(|m| m.len() == 4096)
                })
                .count()
        };
        while written() < files || syncer.unwritten.available_permits() < UNWRITTEN {
            assert!(Instant::now() < deadline, "the writes never ended");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(writes.iter().all(|w| !w.is_finished()));
        assert_eq!(syncer.in_flight.available_permits(), open_limit() - files);
        for _ in 0..SYNC_THREADS {
            go.send(()).unwrap();
        }
        for blocker in blockers {
            blocker.await.unwrap().unwrap();
        }
        for write in writes {
            write.await.unwrap().unwrap();
        }
        assert_eq!(syncer.in_flight.available_permits(), open_limit());
    }

    #[actix_rt::test]
    async fn transfers_wait_for_a_place_while_the_writer_is_behind() {
        let syncer = Syncer::start(8, Counter::default()).unwrap();
        let mut places = Vec::new();
        for _ in 0..UNWRITTEN {
            places.push(syncer.reserve().await.unwrap());
        }
        // Every place taken: the next transfer keeps its slot and waits
        // (it cannot end while no place is free: the wait is no timing).
        let mut next = Box::pin(syncer.reserve());
        let waited = actix_rt::time::timeout(Duration::from_millis(50), &mut next).await;
        assert!(waited.is_err());
        drop(places.pop());
        let next = actix_rt::time::timeout(Duration::from_secs(10), next).await;
        assert!(next.is_ok_and(|place| place.is_ok()));
    }

    #[actix_rt::test]
    async fn a_failed_write_fails_only_its_own_request() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::start(8, Counter::default()).unwrap();
        let good = Arc::new(File::create(dir.path().join("good")).unwrap());
        // Opened read-only: its write fails.
        let bad_path = dir.path().join("bad");
        std::fs::write(&bad_path, b"").unwrap();
        let bad = Arc::new(File::open(&bad_path).unwrap());
        let (a, b) = futures_util::future::join(
            syncer.write_and_sync(
                Access::engine(),
                Target::File(bad),
                Gathered::from(&b"x"[..]),
                0,
                0,
                None,
            ),
            syncer.write_and_sync(
                Access::engine(),
                Target::File(good),
                Gathered::from(&b"ok"[..]),
                0,
                0,
                None,
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
        let syncer = Syncer::start(8, Counter::default()).unwrap();
        let new = dir.path().join("new");
        let old = dir.path().join("old");
        std::fs::write(&old, b"stale bytes of an earlier attempt").unwrap();
        let missing_dir = dir.path().join("gone").join("f");
        let (a, b, c) = futures_util::future::join3(
            syncer.write_and_sync(
                Access::engine(),
                Target::Create(new.clone()),
                Gathered::from(&b"fresh"[..]),
                0,
                0,
                None,
            ),
            syncer.write_and_sync(
                Access::engine(),
                Target::Create(old.clone()),
                Gathered::from(&b"new"[..]),
                0,
                0,
                None,
            ),
            syncer.write_and_sync(
                Access::engine(),
                Target::Create(missing_dir.clone()),
                Gathered::from(&b"x"[..]),
                0,
                0,
                None,
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
