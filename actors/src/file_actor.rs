//! `FileActor`: one file's transfer, or one commit step, and its temp file.
//!
//! A file actor exists only while its file holds a transfer slot or a
//! publish/delete request: queued files are rows in the core job, not actors.
//! It alone writes its temp file; it publishes or deletes it only when its
//! supervisor asks. A transfer runs on its job's arbiter (see
//! [`crate::engine::Placement`]: the engine's home arbiter or a file
//! arbiter), with that arbiter's awc client (awc values never cross
//! arbiters), and reports to its supervisor through a weak recipient (no
//! strong parent address).
//!
//! All file I/O runs on the blocking pool (`spawn_blocking`) or the syncer.
//! A body is written while it is read on: one write in flight, awaited
//! before the next starts (backpressure from disk to socket), its
//! writeback started at once, and checkpoint fdatasyncs beside the writes
//! (see [`Pipe`]), so a large file's disk time overlaps its network time.

use std::{
    cell::RefCell,
    fs::File,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use actix::{WeakRecipient, prelude::*};
use awc::{
    Client,
    http::{StatusCode, header},
};
use ferry_core::{
    ErrorContext, FileEvent, FileId, TransferError, TransferEvent, TransferOrder, UtcTime,
    http::{self, ContentRange, Unsatisfiable},
};
use futures_util::StreamExt as _;
use tokio::sync::{oneshot, watch};

use crate::{
    access::Access,
    chunks::{Coalescer, Gathered, WRITE_SIZE},
    config::EngineConfig,
    engine::{Shared, Tie},
    fs,
    limits::Caps,
    metrics::Metrics,
    syncer::{Failed, Syncer, Target},
};

type Response = awc::ClientResponse;

thread_local! {
    /// One awc client per arbiter thread and engine (awc's advice: one per
    /// thread), built on first use. The home arbiter's thread belongs to
    /// the embedder and may outlive an engine, or run two at once: each
    /// engine has its own (by its config), and [`drop_client`] drops an
    /// engine's with its pooled connections at shutdown.
    static CLIENTS: RefCell<Vec<(std::sync::Weak<EngineConfig>, Client)>> =
        const { RefCell::new(Vec::new()) };
}

fn client(config: &Arc<EngineConfig>) -> Client {
    CLIENTS.with(|cell| {
        let mut clients = cell.borrow_mut();
        if let Some((_, client)) = clients
            .iter()
            .find(|(owner, _)| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(config)))
        {
            return client.clone();
        }
        // Engines gone without a shutdown leave theirs behind: dropped now.
        clients.retain(|(owner, _)| owner.strong_count() > 0);
        let connector = awc::Connector::new()
            .timeout(config.connect_timeout)
            // The engine's scheduler caps concurrency; awc's own limit
            // would count pool waits against the request timeout.
            .limit(0);
        #[cfg(feature = "rustls")]
        let connector = connector.rustls_0_23(tls_config(config));
        let client = Client::builder()
            .connector(connector)
            .disable_redirects()
            .timeout(config.connect_timeout)
            .finish();
        clients.push((Arc::downgrade(config), client.clone()));
        client
    })
}

/// Drops this thread's awc client of the engine with `config` (and its
/// idle connections), if any.
pub(crate) fn drop_client(config: &Arc<EngineConfig>) {
    let dropped: Vec<_> = CLIENTS.with(|cell| {
        let mut clients = cell.borrow_mut();
        let (mine, others) = std::mem::take(&mut *clients)
            .into_iter()
            .partition(|(owner, _)| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(config)));
        *clients = others;
        mine
    });
    drop(dropped);
}

/// The TLS client settings: the trusted roots, HTTP/2 and HTTP/1.1 by
/// ALPN.
#[cfg(feature = "rustls")]
fn tls_config(config: &EngineConfig) -> Arc<rustls::ClientConfig> {
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(root_store(config))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(tls)
}

/// The web PKI roots (unless `tls_web_roots` is off) plus the configured
/// ones.
#[cfg(feature = "rustls")]
fn root_store(config: &EngineConfig) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    if config.tls_web_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for der in &config.tls_roots {
        let cert = rustls::pki_types::CertificateDer::from(der.clone());
        if let Err(err) = roots.add(cert) {
            tracing::warn!(message = "Ignored an unusable TLS root certificate.", error = %err);
        }
    }
    roots
}

/// What a file actor tells its supervisor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum Report {
    /// An event for the core.
    File(FileId, FileEvent),
    /// A connection to this host succeeded.
    HostReachable(String),
}

/// Stop the transfer at the next chunk: what arrived is written and fsynced,
/// and the answer is the durable offset (`None` if the transfer had already
/// ended, or ended with an error; the whole size if it ended whole). Once
/// answered, no write of this attempt is in flight.
#[derive(Debug, Message)]
#[rtype(result = "Option<u64>")]
pub(crate) struct Stop;

/// Publish the temp file (see [`fs::publish`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<fs::Published, String>")]
pub(crate) struct Publish {
    /// The job owner's rights (whose temp file it must be).
    pub(crate) access: Access,
    /// Who gets the published file (the caller of Complete).
    pub(crate) committer: Access,
    pub(crate) temp: PathBuf,
    pub(crate) local: PathBuf,
    pub(crate) modified: Option<UtcTime>,
    pub(crate) size: Option<u64>,
}

/// Delete the temp file.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub(crate) struct Delete {
    pub(crate) access: Access,
    pub(crate) temp: PathBuf,
}

/// The actor.
pub(crate) struct FileActor {
    file: FileId,
    order: Option<TransferOrder>,
    /// Whose rights the transfer's temp file is opened with.
    access: Access,
    config: Arc<EngineConfig>,
    metrics: Option<Arc<Metrics>>,
    throttle: Option<Caps>,
    /// Writes the ends of bodies; runs commit steps.
    syncer: Syncer,
    report: Option<WeakRecipient<Report>>,
    /// Turned true to stop the transfer at the next chunk.
    stop: watch::Sender<bool>,
    /// Who waits for the stopped transfer's durable offset.
    stopped: Option<oneshot::Sender<Option<u64>>>,
    running: bool,
    /// A transfer's tie to the engine: it stops when the engine ends.
    tie: Option<Tie>,
    /// Jobs waiting for a host to answer (see `Shared::transient_jobs`);
    /// transfers only.
    transient_jobs: Option<Arc<AtomicUsize>>,
}

impl std::fmt::Debug for FileActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileActor")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl FileActor {
    /// An actor that runs `order` as soon as it starts.
    pub(crate) fn transfer(
        order: TransferOrder,
        access: Access,
        throttle: Caps,
        report: WeakRecipient<Report>,
        shared: &Shared,
        tie: Tie,
    ) -> Self {
        Self {
            file: order.file,
            order: Some(order),
            access,
            config: shared.config.clone(),
            metrics: Some(shared.metrics.clone()),
            throttle: Some(throttle),
            syncer: shared.syncer.clone(),
            report: Some(report),
            stop: watch::channel(false).0,
            stopped: None,
            running: false,
            tie: Some(tie),
            transient_jobs: Some(shared.transient_jobs.clone()),
        }
    }

    /// An actor for publish or delete requests (run on `syncer`'s threads).
    pub(crate) fn commit(file: FileId, config: Arc<EngineConfig>, syncer: Syncer) -> Self {
        Self {
            file,
            order: None,
            access: Access::engine(),
            config,
            metrics: None,
            throttle: None,
            syncer,
            report: None,
            stop: watch::channel(false).0,
            stopped: None,
            running: false,
            tie: None,
            transient_jobs: None,
        }
    }
}

impl Actor for FileActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(tie) = &self.tie {
            // The engine ended: stop as a `Stop` does (the writes in flight
            // end first, so none lands after the engine is gone).
            let mut ended = tie.ended();
            ctx.spawn(
                async move {
                    let _ = ended.wait_for(|ended| *ended).await;
                }
                .into_actor(self)
                .map(|(), act, ctx| {
                    if act.running {
                        act.stop.send_replace(true);
                    } else {
                        ctx.stop();
                    }
                }),
            );
        }
        let syncer = self.syncer.clone();
        let (Some(order), Some(report), Some(metrics), Some(throttle), Some(transient_jobs)) = (
            self.order.take(),
            self.report.clone(),
            self.metrics.clone(),
            self.throttle.clone(),
            self.transient_jobs.clone(),
        ) else {
            return;
        };
        let active = metrics.transfer_started();
        let attempt = order.attempt;
        let file = self.file;
        let run = Transfer {
            order,
            access: self.access.clone(),
            config: self.config.clone(),
            metrics,
            throttle,
            syncer,
            report: report.clone(),
            stop: self.stop.subscribe(),
            transient_jobs,
        }
        .run();
        self.running = true;
        ctx.spawn(run.into_actor(self).map(move |result, act, ctx| {
            act.running = false;
            drop(active);
            let mut durable = None;
            let event = match result {
                Ok(size) => {
                    durable = Some(size);
                    TransferEvent::Transferred { size }
                }
                Err(Failure::Error(error)) => TransferEvent::Failed(error),
                Err(Failure::Stopped(durable)) => {
                    if let Some(tx) = act.stopped.take() {
                        let _ = tx.send(Some(durable));
                    }
                    ctx.stop();
                    return;
                }
            };
            send(
                &report,
                Report::File(file, FileEvent::Transfer { attempt, event }),
            );
            if let Some(tx) = act.stopped.take() {
                // Stopped just as it ended (or while its end was synced):
                // the end was reported, and a whole file is durable.
                let _ = tx.send(durable);
            }
            ctx.stop();
        }));
    }
}

fn send(report: &WeakRecipient<Report>, message: Report) {
    if let Some(recipient) = report.upgrade() {
        recipient.do_send(message);
    }
}

impl Handler<Stop> for FileActor {
    type Result = ResponseFuture<Option<u64>>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        if !self.running {
            ctx.stop();
            return Box::pin(async { None });
        }
        let (tx, rx) = oneshot::channel();
        self.stopped = Some(tx);
        self.stop.send_replace(true);
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<Publish> for FileActor {
    type Result = ResponseFuture<Result<fs::Published, String>>;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        let syncer = self.syncer.clone();
        Box::pin(async move {
            syncer
                .run(move || {
                    fs::publish(
                        &msg.access,
                        &msg.committer,
                        &msg.temp,
                        &msg.local,
                        msg.modified,
                        msg.size,
                    )
                })
                .await
                .map_err(|err| err.to_string())
        })
    }
}

impl Handler<Delete> for FileActor {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: Delete, _: &mut Context<Self>) -> Self::Result {
        let syncer = self.syncer.clone();
        Box::pin(async move {
            syncer
                .run(move || fs::delete(&msg.access, &msg.temp))
                .await
                .map_err(|err| err.to_string())
        })
    }
}

/// Runs blocking work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    actix_rt::task::spawn_blocking(work)
        .await
        .map_err(|err| std::io::Error::other(format!("blocking task failed: {err}")))?
}

/// One transfer attempt.
struct Transfer {
    order: TransferOrder,
    access: Access,
    config: Arc<EngineConfig>,
    metrics: Arc<Metrics>,
    /// The engine's bandwidth cap.
    throttle: Caps,
    /// Writes and fsyncs a whole body's end (many files per round).
    syncer: Syncer,
    report: WeakRecipient<Report>,
    stop: watch::Receiver<bool>,
    /// Jobs waiting for a host to answer (see `Shared::transient_jobs`).
    transient_jobs: Arc<AtomicUsize>,
}

/// How an attempt ended, if not with the whole file.
enum Failure {
    Error(TransferError),
    /// Stopped on request; the durable offset.
    Stopped(u64),
}

impl From<TransferError> for Failure {
    fn from(error: TransferError) -> Self {
        Self::Error(error)
    }
}

/// Writes and checkpoint fdatasyncs that run while the body is read on.
///
/// At most one write is in flight; the next waits for it (so at most two
/// buffers are in memory, and a slow disk slows the socket). Each write
/// starts the writeback of what it wrote (`posix_fadvise(DONTNEED)`:
/// Linux writes dirty pages back and drops pages already clean), so the
/// disk works while the network does, not all at once at the end. A
/// checkpoint fdatasync runs beside the writes after it and makes durable
/// what was written before it started. Every path out of a transfer
/// settles the pipe first: once a transfer answers, nothing of it is in
/// flight.
#[derive(Default)]
struct Pipe {
    write: Option<tokio::task::JoinHandle<Result<Arc<File>, Failed>>>,
    /// The fdatasync in flight, and the offset it makes durable.
    sync: Option<(tokio::task::JoinHandle<std::io::Result<()>>, u64)>,
}

/// How far behind a write its writeback advice reaches, so that pages
/// whose writeback has ended since are dropped from the cache too.
const ADVISE_BEHIND: u64 = 8 << 20;

impl Pipe {
    /// Starts writing `data` at `offset` into `target`.
    fn start_write(
        &mut self,
        access: Access,
        target: Target,
        data: Gathered,
        offset: u64,
        remote: &str,
    ) {
        debug_assert!(self.write.is_none());
        let injected = offset >= 2 << 20 && crate::failpoint::active_for("file::write", remote);
        self.write = Some(actix_rt::task::spawn_blocking(move || {
            if injected {
                return Err(Failed::Write(std::io::Error::other("injected")));
            }
            let file = target.write(&access, &data, offset)?;
            fs::start_writeback(&file, offset.saturating_sub(ADVISE_BEHIND));
            Ok(file)
        }));
    }

    /// Waits for the write in flight, if any.
    async fn finish_write(&mut self, sink: &mut Sink) -> Result<(), TransferError> {
        if let Some(write) = self.write.take() {
            let file = write
                .await
                .map_err(|err| write_error(&std::io::Error::other(format!("write task: {err}"))))?
                .map_err(failed_error)?;
            sink.file = Some(file);
        }
        Ok(())
    }

    /// Starts an fdatasync of `file`, whose bytes before `offset` are
    /// written.
    /// With `slow` (a test's failpoint) it takes a quarter second more, as
    /// on a busy disk.
    fn start_sync(&mut self, file: Arc<File>, offset: u64, slow: bool) {
        debug_assert!(self.sync.is_none());
        let sync = actix_rt::task::spawn_blocking(move || {
            if slow {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            file.sync_data()
        });
        self.sync = Some((sync, offset));
    }

    /// Takes the fdatasync's outcome: at once if it is done (`wait` false),
    /// else after it. True if bytes turned durable.
    async fn finish_sync(&mut self, sink: &mut Sink, wait: bool) -> Result<bool, TransferError> {
        let Some((sync, offset)) = self.sync.take() else {
            return Ok(false);
        };
        if !wait && !sync.is_finished() {
            self.sync = Some((sync, offset));
            return Ok(false);
        }
        sync.await
            .map_err(|err| write_error(&std::io::Error::other(format!("sync task: {err}"))))?
            .map_err(|err| write_error(&err))?;
        let advanced = offset > sink.durable;
        sink.durable = sink.durable.max(offset);
        Ok(advanced)
    }

    /// Waits for everything in flight; the first error, once all ended.
    async fn settle(&mut self, sink: &mut Sink) -> Result<bool, TransferError> {
        let wrote = self.finish_write(sink).await;
        let synced = self.finish_sync(sink, true).await;
        wrote.and(synced)
    }
}

/// Where the body goes, and how far it got.
struct Sink {
    /// The open temp file; `None` until the first write of a transfer that
    /// starts from byte 0, which creates it in the same trip (a small
    /// file's whole life on disk is then one trip, to the syncer).
    file: Option<Arc<File>>,
    /// Bytes written or being written (not necessarily durable).
    offset: u64,
    /// Bytes durable and reported.
    durable: u64,
    last_checkpoint: Instant,
    last_progress: Instant,
}

impl Sink {
    /// `len` more bytes were written, and with `synced` all are durable.
    fn advance(&mut self, len: u64, synced: bool) {
        self.offset += len;
        if synced {
            self.durable = self.offset;
            self.last_checkpoint = Instant::now();
        }
    }
}

fn local_error(code: &str, err: impl std::fmt::Display) -> TransferError {
    TransferError::fatal(ErrorContext::LocalFile, code, err.to_string())
}

impl Transfer {
    fn event(&self, event: TransferEvent) {
        send(
            &self.report,
            Report::File(
                self.order.file,
                FileEvent::Transfer {
                    attempt: self.order.attempt,
                    event,
                },
            ),
        );
    }

    async fn run(mut self) -> Result<u64, Failure> {
        let wanted = self.order.offset;
        // A resume must know what the temp file holds before it asks for
        // a range; a transfer from byte 0 creates (or cuts back) its temp
        // file only with its first write. So an attempt that never got an
        // answer it could accept leaves no temp file behind it, and one
        // that did always leaves one (its last write, even of nothing,
        // creates it).
        let (file, offset) = if wanted == 0 {
            (None, 0)
        } else {
            let temp = PathBuf::from(&self.order.temp);
            let access = self.access.clone();
            let (file, offset) = blocking(move || fs::open_temp(&access, &temp, wanted))
                .await
                .map_err(|err| local_error("temp_file", err))?;
            (Some(Arc::new(file)), offset)
        };
        let mut sink = Sink {
            file,
            offset,
            durable: offset,
            last_checkpoint: Instant::now(),
            last_progress: Instant::now(),
        };
        // A temp file shorter than the checkpoint lost its data: start over,
        // without a validator (nothing to resume).
        let mut validator = if offset == wanted {
            self.order.validator.clone()
        } else {
            None
        };
        let mut restarted_on_416 = false;
        loop {
            let mut stop = self.stop.clone();
            let request = self.request(sink.offset, validator.as_ref());
            let Some(response) = until_stopped(&mut stop, request).await else {
                return Err(Failure::Stopped(sink.durable));
            };
            let mut response = response?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = |name: header::HeaderName| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_range = text(header::CONTENT_RANGE);
            let asked_range = sink.offset > 0;
            // What refuses a response is checked before anything on disk
            // changes (a bad 200 must not throw away saved progress).
            if status.is_success()
                && let Some(coding) = text(header::CONTENT_ENCODING)
                && !coding.trim().eq_ignore_ascii_case("identity")
            {
                return Err(Failure::Error(TransferError::fatal(
                    ErrorContext::RemoteFile,
                    "content_encoding",
                    format!("the server sent a {coding:?}-encoded body, not the file itself"),
                )));
            }
            let size = match status {
                StatusCode::PARTIAL_CONTENT => {
                    // Any 206 must say which bytes it carries and of how
                    // many: the size comes from Content-Range, never from
                    // Content-Length (the length of the part).
                    match content_range.as_deref().and_then(http::parse_content_range) {
                        Some(ContentRange::Bytes {
                            first,
                            complete: Some(complete),
                            ..
                        }) if first == sink.offset => Some(complete),
                        _ => {
                            return Err(Failure::Error(TransferError::transient(
                                ErrorContext::RemoteFile,
                                "invalid_content_range",
                                format!(
                                    "206 with Content-Range {content_range:?} for a request from byte {}",
                                    sink.offset
                                ),
                            )));
                        }
                    }
                }
                StatusCode::OK => {
                    if sink.offset > 0 {
                        // The entity changed or ranges are not supported:
                        // restart from zero, never splice.
                        self.truncate(&mut sink, 0).await?;
                    }
                    response
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()))
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    match http::unsatisfiable(
                        sink.offset,
                        self.order.size,
                        content_range.as_deref(),
                        restarted_on_416,
                    ) {
                        Unsatisfiable::Finished => {
                            // Everything was already here. Never at byte
                            // 0 (`http::unsatisfiable` asks for bytes on
                            // disk), so the temp file is open; should that
                            // rule change, it must exist to be published.
                            match &sink.file {
                                None => self.write(&mut sink, Gathered::default(), true).await?,
                                // Its bytes are durable (a checkpoint's),
                                // but not maybe its cut back length or a
                                // time set before a failed sync; every
                                // transfer ends synced, as publish relies
                                // on.
                                Some(file) => {
                                    let file = file.clone();
                                    blocking(move || file.sync_all())
                                        .await
                                        .map_err(|err| write_error(&err))?;
                                }
                            }
                            self.event(TransferEvent::Responded {
                                offset: sink.offset,
                                size: Some(sink.offset),
                                validator: validator.clone(),
                                modified: None,
                                ranges: true,
                            });
                            return Ok(sink.offset);
                        }
                        Unsatisfiable::Fatal => {
                            return Err(Failure::Error(TransferError::fatal(
                                ErrorContext::RemoteFile,
                                "http_416",
                                "the server refused the range twice",
                            )));
                        }
                        Unsatisfiable::Restart => {
                            restarted_on_416 = true;
                            self.truncate(&mut sink, 0).await?;
                            validator = None;
                            continue;
                        }
                    }
                }
                status => return Err(Failure::Error(self.status_error(status, &headers))),
            };
            let etag = text(header::ETAG);
            let last_modified = text(header::LAST_MODIFIED);
            let modified = last_modified.as_deref().and_then(http::parse_http_date);
            self.event(TransferEvent::Responded {
                offset: sink.offset,
                size,
                validator: http::validator(etag.as_deref(), last_modified.as_deref()),
                modified,
                // Servers may take ranges without saying so: only an
                // explicit `Accept-Ranges: none`, or a ranged request
                // answered with the whole entity, says they do not.
                ranges: !(asked_range && status == StatusCode::OK
                    || text(header::ACCEPT_RANGES)
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))),
            });
            return self.body(&mut response, &mut sink, size, modified).await;
        }
    }

    /// Sends the GET (following redirects from the file's remote name).
    async fn request(
        &self,
        offset: u64,
        validator: Option<&ferry_core::Validator>,
    ) -> Result<Response, TransferError> {
        let client = client(&self.config);
        let mut url = url_of(&self.order.remote)?;
        let mut hops = 0;
        loop {
            let host = url.host_str().unwrap_or_default().to_owned();
            let mut request = client
                .get(url.as_str())
                .insert_header((header::ACCEPT_ENCODING, "identity"))
                .timeout(self.config.connect_timeout);
            if offset > 0 {
                request = request.insert_header((header::RANGE, format!("bytes={offset}-")));
                match validator {
                    Some(ferry_core::Validator::ETag(tag)) => {
                        request = request.insert_header((header::IF_RANGE, tag.as_str()));
                    }
                    Some(ferry_core::Validator::LastModified(date)) => {
                        request = request.insert_header((header::IF_RANGE, date.as_str()));
                    }
                    None => {}
                }
            }
            let response = request
                .send()
                .await
                .map_err(|err| send_error(&host, &err))?;
            // News only for jobs held by connection errors, if any.
            if self.transient_jobs.load(Ordering::Relaxed) > 0 {
                send(&self.report, Report::HostReachable(host));
            }
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
            {
                hops += 1;
                if hops > self.config.max_redirects {
                    return Err(TransferError::fatal(
                        ErrorContext::RemoteFile,
                        "too_many_redirects",
                        format!("more than {} redirects", self.config.max_redirects),
                    ));
                }
                let next = url.join(location).map_err(|err| {
                    TransferError::fatal(
                        ErrorContext::RemoteFile,
                        "bad_redirect",
                        format!("redirect to {location:?}: {err}"),
                    )
                })?;
                if url.scheme() == "https" && next.scheme() != "https" {
                    return Err(TransferError::fatal(
                        ErrorContext::RemoteFile,
                        "insecure_redirect",
                        format!("refused redirect from https to {next}"),
                    ));
                }
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(TransferError::fatal(
                        ErrorContext::RemoteFile,
                        "bad_redirect",
                        format!("redirect to unsupported URL {next}"),
                    ));
                }
                url = next;
                continue;
            }
            return Ok(response);
        }
    }

    fn status_error(
        &self,
        status: StatusCode,
        headers: &awc::http::header::HeaderMap,
    ) -> TransferError {
        let code = status.as_u16();
        let mut error = TransferError::transient(
            ErrorContext::RemoteFile,
            format!("http_{code}"),
            format!("the server answered {status}"),
        );
        error.class = http::status_class(code);
        let now = crate::clock::wall_now();
        error.retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| http::parse_retry_after(v, now));
        error
    }

    async fn truncate(&self, sink: &mut Sink, len: u64) -> Result<(), TransferError> {
        // A temp file not opened yet is cut back when it is (to 0).
        if let Some(file) = sink.file.clone() {
            blocking(move || file.set_len(len))
                .await
                .map_err(|err| local_error("temp_file", err))?;
        }
        sink.offset = len;
        sink.durable = len;
        Ok(())
    }

    /// Streams the body into the temp file; once it is whole, the file gets
    /// `modified` as its modification time (made durable with its bytes, so
    /// that Complete only renames).
    async fn body(
        &mut self,
        response: &mut Response,
        sink: &mut Sink,
        size: Option<u64>,
        modified: Option<UtcTime>,
    ) -> Result<u64, Failure> {
        let mut buf = Coalescer::new(WRITE_SIZE);
        let mut pipe = Pipe::default();
        let mut stopped = false;
        // The last chunk's arrival (the idle timeout counts from it) and
        // the last offset reported as progress.
        let mut last_chunk = Instant::now();
        let mut reported = sink.offset;
        let outcome = loop {
            let idle = self.config.idle_timeout;
            let idle_left = idle.saturating_sub(last_chunk.elapsed());
            // While something arrived that is not yet on disk, durable and
            // reported, wait at most one checkpoint interval: a server
            // that pauses (or holds the last byte) must not keep received
            // bytes in memory and out of sight.
            // The interval counts from the last checkpoint, so a trickle
            // that never fills a write is checkpointed on time too.
            let pending = !buf.is_empty() || sink.offset > sink.durable || sink.offset > reported;
            let wait = if pending {
                // While a checkpoint runs, its own end is awaited no
                // sooner than an interval from now (a slow fdatasync must
                // not turn every short wait into an inline write and sync).
                let due = if pipe.sync.is_some() {
                    self.config.checkpoint_interval
                } else {
                    self.config
                        .checkpoint_interval
                        .saturating_sub(sink.last_checkpoint.elapsed())
                };
                idle_left.min(due)
            } else {
                idle_left
            };
            let next = actix_rt::time::timeout(wait, response.next());
            let mut stop = self.stop.clone();
            let Some(next) = until_stopped(&mut stop, next).await else {
                stopped = true;
                break Ok(());
            };
            let chunk = match next {
                Err(_) if last_chunk.elapsed() < idle => {
                    let io = Instant::now();
                    let settled = self.settle(&mut pipe, sink).await?;
                    if !buf.is_empty() || sink.offset > sink.durable {
                        if let Err(error) = self.write(sink, buf.take(), true).await {
                            // What the checkpoint made durable still counts.
                            if settled {
                                self.report_checkpoint(sink);
                            }
                            return Err(Failure::Error(error));
                        }
                        self.report_checkpoint(sink);
                    } else if settled {
                        self.report_checkpoint(sink);
                    }
                    if sink.offset > reported {
                        reported = sink.offset;
                        sink.last_progress = Instant::now();
                        self.event(TransferEvent::Received { offset: reported });
                    }
                    // Our own disk time is not the server's silence.
                    last_chunk += io.elapsed();
                    continue;
                }
                Err(_) => {
                    break Err(TransferError::transient(
                        ErrorContext::Transport,
                        "body_timeout",
                        format!("no data for {:?}", self.config.idle_timeout),
                    ));
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(err))) => {
                    break Err(TransferError::transient(
                        ErrorContext::Transport,
                        "truncated_body",
                        err.to_string(),
                    ));
                }
                Ok(Some(Ok(chunk))) => {
                    last_chunk = Instant::now();
                    chunk
                }
            };
            let received = sink.offset + buf.len() as u64 + chunk.len() as u64;
            if size.is_some_and(|s| received > s) {
                break Err(TransferError::transient(
                    ErrorContext::RemoteFile,
                    "body_too_long",
                    "the body is longer than announced",
                ));
            }
            let chunk_len = chunk.len();
            self.metrics.received(chunk_len);
            let full = buf.push(chunk);
            // The bandwidth cap: pause before reading on (the sender is
            // held back through TCP). Our own pause is not server silence.
            let pause = self.throttle.take(chunk_len as u64);
            if !pause.is_zero() {
                let mut stop = self.stop.clone();
                if until_stopped(&mut stop, actix_rt::time::sleep(pause))
                    .await
                    .is_none()
                {
                    stopped = true;
                    break Ok(());
                }
                last_chunk += pause;
            }
            if sink.last_progress.elapsed() >= self.config.progress_interval {
                sink.last_progress = Instant::now();
                reported = received;
                self.event(TransferEvent::Received { offset: received });
            }
            if let Some(data) = full {
                let io = Instant::now();
                if let Err(error) = self.pipe_write(&mut pipe, sink, data).await {
                    // The checkpoint in flight ends first, and what it made
                    // durable is reported: a retry resumes from there.
                    if let Ok(true) = self.settle(&mut pipe, sink).await {
                        self.report_checkpoint(sink);
                    }
                    return Err(Failure::Error(error));
                }
                last_chunk += io.elapsed();
            }
        };
        let rest = buf.take();
        let end = sink.offset + rest.len() as u64;
        if !stopped && outcome.is_ok() && size.is_none_or(|s| end >= s) {
            // The body is whole: the connection and the transfer slot are
            // free while its end is written and fsynced (the next file
            // starts meanwhile), by the syncer, which makes the ends of
            // many files durable in one round. First a place among the
            // bodies waiting for the syncer's writer: while the writer is
            // behind (a disk slower than the network), the slot stays taken
            // and no more bodies pile up in memory. Files written and
            // waiting for their commit hold an open file each, not bytes.
            let place = self.syncer.reserve().await.map_err(failed_error)?;
            self.event(TransferEvent::Drained { size: end });
            // The connection went back to the pool at the body's end, but
            // the response's payload still holds its read and write
            // buffers (some 48 KiB): let them go now, not after the sync,
            // or every file syncing keeps its own.
            drop(actix_web::HttpMessage::take_payload(response));
            // A checkpoint that ends here is reported: should the last
            // write fail, a retry resumes from there.
            if self.settle(&mut pipe, sink).await? {
                self.report_checkpoint(sink);
            }
            if crate::failpoint::active_for("file::final_write", &self.order.remote) {
                return Err(Failure::Error(local_error("write_failed", "injected")));
            }
            let len = rest.len() as u64;
            let target = self.target(sink);
            place
                .write_and_sync(
                    self.access.clone(),
                    target,
                    rest,
                    sink.offset,
                    sink.durable,
                    modified.map(fs::file_time),
                )
                .await
                .map_err(failed_error)?;
            sink.advance(len, true);
            return Ok(sink.offset);
        }
        // Keep what arrived, even when the body broke off or we stop.
        let settled = self.settle(&mut pipe, sink).await?;
        if let Err(error) = self.write(sink, rest, true).await {
            if settled {
                self.report_checkpoint(sink);
            }
            return Err(Failure::Error(error));
        }
        if stopped {
            return Err(Failure::Stopped(sink.durable));
        }
        if let Err(error) = outcome {
            self.report_checkpoint(sink);
            return Err(Failure::Error(error));
        }
        if let Some(size) = size
            && sink.offset < size
        {
            self.report_checkpoint(sink);
            return Err(Failure::Error(TransferError::transient(
                ErrorContext::Transport,
                "truncated_body",
                format!("the body ended at byte {} of {size}", sink.offset),
            )));
        }
        Ok(sink.offset)
    }

    /// Settles the pipe (see [`Pipe::settle`]). If that fails, what its
    /// fdatasync made durable is reported first (a retry resumes from
    /// there); else the caller decides (true: bytes turned durable).
    async fn settle(&self, pipe: &mut Pipe, sink: &mut Sink) -> Result<bool, TransferError> {
        let before = sink.durable;
        let settled = pipe.settle(sink).await;
        if settled.is_err() && sink.durable > before {
            self.report_checkpoint(sink);
        }
        settled
    }

    /// Hands a full buffer to the pipe: waits for the write before it,
    /// reports a checkpoint that ended, starts one if due, then starts
    /// this write.
    async fn pipe_write(
        &self,
        pipe: &mut Pipe,
        sink: &mut Sink,
        data: Gathered,
    ) -> Result<(), TransferError> {
        pipe.finish_write(sink).await?;
        if pipe.finish_sync(sink, false).await? {
            self.report_checkpoint(sink);
        }
        let due = sink.offset - sink.durable >= self.config.checkpoint_bytes
            || sink.last_checkpoint.elapsed() >= self.config.checkpoint_interval;
        if due
            && pipe.sync.is_none()
            && sink.offset > sink.durable
            && let Some(file) = &sink.file
        {
            let slow = crate::failpoint::active_for("file::slow_checkpoint", &self.order.remote);
            pipe.start_sync(file.clone(), sink.offset, slow);
            sink.last_checkpoint = Instant::now();
        }
        let len = data.len() as u64;
        pipe.start_write(
            self.access.clone(),
            self.target(sink),
            data,
            sink.offset,
            &self.order.remote,
        );
        sink.offset += len;
        Ok(())
    }

    /// Writes `data` (maybe nothing) at the sink's offset and, with
    /// `sync`, fsyncs the file, in one trip to the blocking pool that
    /// first creates the temp file if this transfer has not yet.
    async fn write(
        &self,
        sink: &mut Sink,
        data: Gathered,
        sync: bool,
    ) -> Result<(), TransferError> {
        if crate::failpoint::active_for("file::inline_write", &self.order.remote) {
            return Err(local_error("write_failed", "injected"));
        }
        let target = self.target(sink);
        let offset = sink.offset;
        let len = data.len() as u64;
        let access = self.access.clone();
        let written = blocking(move || {
            Ok(target.write(&access, &data, offset).and_then(|file| {
                if sync {
                    file.sync_data().map_err(Failed::Write)?;
                }
                Ok(file)
            }))
        })
        .await
        .map_err(|err| write_error(&err))?;
        sink.file = Some(written.map_err(failed_error)?);
        sink.advance(len, sync);
        Ok(())
    }

    /// The temp file a write goes to: the open one, or this transfer's to
    /// create.
    fn target(&self, sink: &Sink) -> Target {
        match &sink.file {
            Some(file) => Target::File(file.clone()),
            None => Target::Create(PathBuf::from(&self.order.temp)),
        }
    }

    fn report_checkpoint(&self, sink: &Sink) {
        if sink.durable > 0 {
            self.event(TransferEvent::Checkpointed {
                offset: sink.durable,
            });
        }
    }
}

/// A failed write of the end of a body, or of any write.
fn failed_error(failed: Failed) -> TransferError {
    match failed {
        Failed::Open(err) => local_error("temp_file", err),
        Failed::Write(err) => write_error(&err),
    }
}

fn write_error(err: &std::io::Error) -> TransferError {
    let code = if err.raw_os_error() == Some(28) {
        "disk_full"
    } else {
        "write_failed"
    };
    local_error(code, err)
}

fn url_of(remote: &str) -> Result<url::Url, TransferError> {
    url::Url::parse(remote).map_err(|err| {
        TransferError::fatal(
            ErrorContext::RemoteFile,
            "bad_url",
            format!("{remote}: {err}"),
        )
    })
}

/// A failed send: connection-level errors are transient and name the host.
fn send_error(host: &str, err: &awc::error::SendRequestError) -> TransferError {
    use awc::error::{ConnectError, SendRequestError as E};
    let (code, unreachable) = match err {
        E::Url(_) => {
            return TransferError::fatal(ErrorContext::RemoteFile, "bad_url", err.to_string());
        }
        E::Connect(ConnectError::Timeout) | E::Timeout => ("timeout", true),
        E::Connect(ConnectError::Resolver(_)) => ("dns", true),
        E::Connect(ConnectError::Io(_)) => ("connection_failed", true),
        E::Connect(_) => ("connect_failed", true),
        E::Send(_) => ("connection_reset", false),
        _ => ("request_failed", false),
    };
    let mut error = TransferError::transient(ErrorContext::Transport, code, err.to_string());
    if unreachable {
        error.unreachable_host = Some(host.to_owned());
    }
    error
}

/// Runs `work` unless the stop signal turns true first (then `None`).
async fn until_stopped<F: std::future::Future>(
    stop: &mut watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    if *stop.borrow() {
        return None;
    }
    let stopped = stop.wait_for(|stop| *stop);
    futures_util::pin_mut!(work);
    futures_util::pin_mut!(stopped);
    match futures_util::future::select(work, stopped).await {
        futures_util::future::Either::Left((output, _)) => Some(output),
        futures_util::future::Either::Right(_) => None,
    }
}

#[cfg(all(test, feature = "rustls"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_web_roots_are_trusted_unless_turned_off() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let mut config = EngineConfig::new("/nowhere");
        config.tls_roots = vec![cert.cert.der().to_vec()];
        let web = webpki_roots::TLS_SERVER_ROOTS.len();
        assert!(web > 100);
        assert_eq!(root_store(&config).len(), web + 1);
        config.tls_web_roots = false;
        assert_eq!(root_store(&config).len(), 1);
        config.tls_roots.clear();
        assert!(root_store(&config).is_empty());
    }
}
