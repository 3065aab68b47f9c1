//! The store: ferry's only contact with RocksDB.
//!
//! # Design constraints
//! - One module builds every `WriteBatch` ([`Store::write`] through the writer
//!   thread); nothing else names rocksdb.
//! - Writes run on a dedicated writer thread, never on an actix arbiter. The
//!   writer drains every request queued while it was busy into **one** batch
//!   and one synced write (group commit): many jobs acknowledging commands at
//!   once cost one fsync, not one each.
//! - A request that needs durability (`sync`) is answered only after the
//!   synced write returns; lazy requests ride along in the same batch order.
//!
//! # Layout
//! Column families (constants below): `meta` (schema version, engine id),
//! `jobs` (job records by job id), `files` (file records by job id + file id,
//! so one job's files are one key range), `pending_deletes` (temp files whose
//! deletion failed, retried by the sweep; the value names the user whose
//! rights delete them), `dir_pins` (job id + directory path → the identity of
//! the directory files were added in, see `access.rs`). Job and file values
//! are ferry-core's encoded records: only ferry-core knows their bytes.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    thread,
};

use ferry_core::{Batch, DecodeError, FileRecord, JobId, JobRecord, SCHEMA_VERSION, record};
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, Direction, IteratorMode, MultiThreaded, Options,
    WriteBatch, WriteOptions,
};
use tokio::sync::oneshot;

use crate::{access::DirId, metrics::Metrics};

type Db = DBWithThreadMode<MultiThreaded>;

const CF_META: &str = "meta";
const CF_JOBS: &str = "jobs";
const CF_FILES: &str = "files";
const CF_PENDING_DELETES: &str = "pending_deletes";
const CF_DIR_PINS: &str = "dir_pins";
const COLUMN_FAMILIES: [&str; 5] = [CF_META, CF_JOBS, CF_FILES, CF_PENDING_DELETES, CF_DIR_PINS];

const KEY_SCHEMA: &[u8] = b"schema_version";
const KEY_ENGINE_ID: &[u8] = b"engine_id";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB failed (I/O error, corruption, the data dir locked by another
    /// process, ...).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The data dir was written by a build with another schema version.
    #[error("the store at {path} has schema version {found}, this build reads version {expected}")]
    SchemaVersion {
        /// The data dir.
        path: PathBuf,
        /// The version found.
        found: String,
        /// The version this build reads.
        expected: u8,
    },
    /// A record could not be decoded.
    #[error("corrupt record: {0}")]
    Decode(#[from] DecodeError),
    /// The writer thread is gone (the store was closed).
    #[error("the store is closed")]
    Closed,
}

/// A write for the writer thread.
#[derive(Debug, Default)]
pub(crate) struct StoreBatch {
    puts: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    deletes: Vec<(&'static str, Vec<u8>)>,
    /// Delete every record of these jobs.
    forget: Vec<JobId>,
}

impl StoreBatch {
    /// The records of a core `Persist` effect.
    pub(crate) fn from_core(batch: &Batch) -> Self {
        Self::from_records(batch.job_record.as_deref(), &batch.files)
    }

    /// Puts of a job record and of file records, encoded.
    pub(crate) fn from_records<'a>(
        job: Option<&JobRecord>,
        files: impl IntoIterator<Item = &'a FileRecord>,
    ) -> Self {
        let mut out = Self::default();
        if let Some(job) = job {
            out.puts.push((CF_JOBS, job.key().to_vec(), job.encode()));
        }
        for file in files {
            out.puts
                .push((CF_FILES, file.key().to_vec(), file.encode()));
        }
        out
    }

    /// How many records it puts.
    #[cfg(test)]
    pub(crate) fn put_count(&self) -> usize {
        self.puts.len()
    }

    /// Deletes every record of `job`.
    pub(crate) fn forget(job: JobId) -> Self {
        Self {
            forget: vec![job],
            ..Self::default()
        }
    }

    /// Records `path` as a temp file to delete later.
    /// `user` is whose rights the delete runs with (an empty name: the
    /// engine's own).
    pub(crate) fn add_pending_delete(path: &str, user: &str) -> Self {
        Self {
            puts: vec![(
                CF_PENDING_DELETES,
                path.as_bytes().to_vec(),
                user.as_bytes().to_vec(),
            )],
            ..Self::default()
        }
    }

    /// Records that `job`'s files in `dir` go to the directory `id`.
    pub(crate) fn pin_dir(job: JobId, dir: &Path, id: DirId) -> Self {
        let mut key = record::job_key(job).to_vec();
        key.extend_from_slice(dir.as_os_str().as_encoded_bytes());
        Self {
            puts: vec![(CF_DIR_PINS, key, id.to_bytes())],
            ..Self::default()
        }
    }

    /// Removes `path` from the pending deletes.
    pub(crate) fn remove_pending_delete(path: &str) -> Self {
        Self {
            deletes: vec![(CF_PENDING_DELETES, path.as_bytes().to_vec())],
            ..Self::default()
        }
    }
}

enum Request {
    Write {
        batch: StoreBatch,
        sync: bool,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// Close the database (after the writes queued before) and end.
    Close(oneshot::Sender<()>),
}

/// Everything the store held at open.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Each job's record and its file records.
    pub(crate) jobs: Vec<(JobRecord, Vec<FileRecord>)>,
    /// Temp files whose deletion is still owed.
    /// Temp files to delete, each with the user whose rights the delete
    /// runs with (empty: the engine's own).
    pub(crate) pending_deletes: Vec<(String, String)>,
    /// Directory pins by job.
    pub(crate) dir_pins: HashMap<JobId, Vec<(PathBuf, DirId)>>,
    /// Records that could not be decoded (reported, skipped).
    pub(crate) corrupt: Vec<String>,
}

/// The store. Cheap to clone. The database itself belongs to the writer
/// thread: it is closed (and its lock released) by [`Store::close`], or when
/// the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Writer>,
    engine_id: u64,
}

/// The writer thread's queue and handle. Dropping the last one closes the
/// database and waits for that, as dropping a database handle would: a
/// process that exits right after dropping an engine without
/// [`crate::Engine::shutdown`] must not exit while RocksDB is still closing
/// on another thread (its static destructors then crash the process; seen
/// as a SIGSEGV at the end of a test binary).
struct Writer {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Writer {
    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(request)
            .map_err(|_| StoreError::Closed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // No sender left: the writer writes what is queued, closes the
        // database and ends.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine_id", &self.engine_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads everything in it.
    /// Blocking: call it off the arbiters (the engine does so at start).
    pub(crate) fn open(
        dir: &Path,
        new_engine_id: u64,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, Loaded), StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let cfs = COLUMN_FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = Db::open_cf_descriptors(&options, dir, cfs)?;
        let meta = cf(&db, CF_META)?;
        let engine_id = match db.get_cf(&meta, KEY_SCHEMA)? {
            None => {
                // A new store: stamp it.
                let mut batch = WriteBatch::default();
                batch.put_cf(&meta, KEY_SCHEMA, [SCHEMA_VERSION]);
                batch.put_cf(&meta, KEY_ENGINE_ID, new_engine_id.to_be_bytes());
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                db.write_opt(batch, &sync)?;
                new_engine_id
            }
            Some(version) if version == [SCHEMA_VERSION] => {
                let id = db.get_cf(&meta, KEY_ENGINE_ID)?.unwrap_or_default();
                let bytes: [u8; 8] = id
                    .as_slice()
                    .try_into()
                    .map_err(|_| DecodeError::Malformed("the engine id is not 8 bytes".into()))?;
                u64::from_be_bytes(bytes)
            }
            Some(version) => {
                return Err(StoreError::SchemaVersion {
                    path: dir.to_owned(),
                    found: match version.as_slice() {
                        [one] => one.to_string(),
                        other => format!("{other:02x?}"),
                    },
                    expected: SCHEMA_VERSION,
                });
            }
        };
        drop(meta);
        let loaded = load(&db)?;
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("ferry-store".into())
            .spawn(move || writer(db, &rx, &metrics))
            .map_err(|err| StoreError::Decode(DecodeError::Malformed(err.to_string())))?;
        let inner = Arc::new(Writer {
            tx: Some(tx),
            thread: Some(thread),
        });
        Ok((Self { inner, engine_id }, loaded))
    }

    /// The engine id stamped in the store when it was created.
    pub(crate) fn engine_id(&self) -> u64 {
        self.engine_id
    }

    /// Writes everything queued, closes the database and releases its lock.
    pub(crate) async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.send(Request::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes `batch`; with `sync`, answers once it is fsynced. Runs on the
    /// writer thread, grouped with other writes queued meanwhile. The write
    /// is queued when this is called, not when the answer is first awaited:
    /// its place among other writes is the caller's order.
    pub(crate) fn write(
        &self,
        batch: StoreBatch,
        sync: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + use<> {
        let (done, wait) = oneshot::channel();
        let request = Request::Write {
            batch,
            sync,
            done: Some(done),
        };
        let sent = self.inner.send(request);
        async move {
            sent?;
            match wait.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(message)) => Err(StoreError::Decode(DecodeError::Malformed(message))),
                Err(_) => Err(StoreError::Closed),
            }
        }
    }

    /// Queues `batch` without waiting (a lazy write; order with later writes
    /// is kept).
    pub(crate) fn write_lazy(&self, batch: StoreBatch) -> Result<(), StoreError> {
        let request = Request::Write {
            batch,
            sync: false,
            done: None,
        };
        self.inner.send(request)
    }

    /// Waits until every write queued so far is durable.
    pub(crate) fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + use<> {
        self.write(StoreBatch::default(), true)
    }
}

/// Reads every job, file and pending delete.
fn load(db: &Db) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded::default();
    let jobs_cf = cf(db, CF_JOBS)?;
    let files_cf = cf(db, CF_FILES)?;
    let mut jobs: Vec<(JobRecord, Vec<FileRecord>)> = Vec::new();
    for item in db.iterator_cf(&jobs_cf, IteratorMode::Start) {
        let (key, value) = item?;
        match JobRecord::decode(&value) {
            Ok(job) => jobs.push((job, Vec::new())),
            Err(err) => loaded.corrupt.push(format!("job {key:02x?}: {err}")),
        }
    }
    for (job, files) in &mut jobs {
        let prefix = record::job_key(job.id());
        let mode = IteratorMode::From(&prefix, Direction::Forward);
        for item in db.iterator_cf(&files_cf, mode) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            match FileRecord::decode(&value) {
                Ok(file) => files.push(file),
                // The job is left out (its records stay in the store).
                Err(err) => loaded.corrupt.push(format!("file {key:02x?}: {err}")),
            }
        }
    }
    // A job with a corrupt file record does not restore (its file count
    // does not match); Job::restore reports it, the engine skips it.
    loaded.jobs = jobs;
    let pending = cf(db, CF_PENDING_DELETES)?;
    for item in db.iterator_cf(&pending, IteratorMode::Start) {
        let (key, value) = item?;
        loaded.pending_deletes.push((
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
    let pins = cf(db, CF_DIR_PINS)?;
    for item in db.iterator_cf(&pins, IteratorMode::Start) {
        let (key, value) = item?;
        let pin = key.split_at_checked(16).and_then(|(job, dir)| {
            let job = record::parse_job_key(job).ok()?;
            let dir = PathBuf::from(String::from_utf8(dir.to_vec()).ok()?);
            Some((job, dir, DirId::from_bytes(&value)?))
        });
        match pin {
            Some((job, dir, id)) => loaded.dir_pins.entry(job).or_default().push((dir, id)),
            None => loaded.corrupt.push(format!("directory pin {key:02x?}")),
        }
    }
    Ok(loaded)
}

fn cf<'a>(db: &'a Db, name: &str) -> Result<Arc<rocksdb::BoundColumnFamily<'a>>, StoreError> {
    db.cf_handle(name).ok_or_else(|| {
        StoreError::Decode(DecodeError::Malformed(format!(
            "column family {name} missing"
        )))
    })
}

/// The writer thread: group commit. Owns the database; closing it drops it.
fn writer(db: Db, rx: &mpsc::Receiver<Request>, metrics: &Metrics) {
    let mut closing = None;
    while let Ok(first) = rx.recv() {
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next {
            match request {
                Request::Write { batch, sync, done } => group.push((batch, sync, done)),
                Request::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        let started = std::time::Instant::now();
        let result = write_group(&db, &mut group).map_err(|err| err.to_string());
        metrics.store_write(started.elapsed());
        if let Err(err) = &result {
            tracing::error!(message = "Store write failed.", error = %err);
        }
        for (_, _, done) in group {
            if let Some(done) = done {
                let _ = done.send(result.clone());
            }
        }
        if closing.is_some() {
            break;
        }
    }
    let _ = db.flush_wal(true);
    drop(db);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

type Queued = (
    StoreBatch,
    bool,
    Option<oneshot::Sender<Result<(), String>>>,
);

fn write_group(db: &Db, group: &mut [Queued]) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    let mut sync = false;
    for (request, request_sync, _) in group.iter_mut() {
        sync |= *request_sync;
        let StoreBatch {
            puts,
            deletes,
            forget,
        } = std::mem::take(request);
        for (name, key, value) in puts {
            batch.put_cf(&cf(db, name)?, key, value);
        }
        for (name, key) in deletes {
            batch.delete_cf(&cf(db, name)?, key);
        }
        for job in forget {
            let key = record::job_key(job);
            batch.delete_cf(&cf(db, CF_JOBS)?, key);
            let mut end = key.to_vec();
            end.extend_from_slice(&[0xff; 5]);
            batch.delete_range_cf(&cf(db, CF_FILES)?, key.to_vec(), end);
            // Paths may hold any byte: the range ends at the next job id.
            let mut next = key.to_vec();
            if let Some(last) = next.iter().rposition(|b| *b != 0xff) {
                next.truncate(last + 1);
                if let Some(byte) = next.last_mut() {
                    *byte += 1;
                }
                batch.delete_range_cf(&cf(db, CF_DIR_PINS)?, key.to_vec(), next);
            }
        }
    }
    if batch.is_empty() && !sync {
        return Ok(());
    }
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    if batch.is_empty() {
        // A flush: a synced write of nothing still syncs the WAL.
        db.flush_wal(true)?;
        return Ok(());
    }
    db.write_opt(batch, &options)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn directory_pins_load_by_job_and_go_with_the_job() {
        let dir = tempfile::TempDir::new().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (a, b) = (JobId(uuid::Uuid::now_v7()), JobId(uuid::Uuid::now_v7()));
        let id = DirId::from_bytes(&[7; 24]).unwrap();
        {
            let (store, loaded) = Store::open(dir.path(), 1, metrics.clone()).unwrap();
            assert!(loaded.dir_pins.is_empty());
            store
                .write_lazy(StoreBatch::pin_dir(a, Path::new("/x/\u{ff}y"), id))
                .unwrap();
            store
                .write_lazy(StoreBatch::pin_dir(a, Path::new("/z"), id))
                .unwrap();
            store
                .write_lazy(StoreBatch::pin_dir(b, Path::new("/x"), id))
                .unwrap();
            actix_rt::System::new().block_on(store.flush()).unwrap();
            actix_rt::System::new().block_on(store.close());
        }
        {
            let (store, loaded) = Store::open(dir.path(), 1, metrics.clone()).unwrap();
            let mut of_a = loaded.dir_pins.get(&a).cloned().unwrap();
            of_a.sort_by(|x, y| x.0.cmp(&y.0));
            assert_eq!(
                of_a,
                vec![(PathBuf::from("/x/\u{ff}y"), id), (PathBuf::from("/z"), id)]
            );
            assert_eq!(loaded.dir_pins.get(&b).map(Vec::len), Some(1));
            store.write_lazy(StoreBatch::forget(a)).unwrap();
            actix_rt::System::new().block_on(store.flush()).unwrap();
            actix_rt::System::new().block_on(store.close());
        }
        let (store, loaded) = Store::open(dir.path(), 1, metrics).unwrap();
        // Closed before the test ends: a database still closing on the
        // writer thread when the process exits aborts it.
        actix_rt::System::new().block_on(store.close());
        assert!(!loaded.dir_pins.contains_key(&a));
        assert_eq!(loaded.dir_pins.get(&b).map(Vec::len), Some(1));
        assert!(loaded.corrupt.is_empty(), "{:?}", loaded.corrupt);
    }
}
