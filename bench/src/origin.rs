//! The shared test origin: an actix-web server on 127.0.0.1:0 that serves
//! generated content with Range, ETag and Last-Modified, and injects faults.
//!
//! Content is a pure function of a file's seed and the byte offset
//! ([`content`]), so any size costs no memory or disk and a downloaded file
//! is checked byte for byte against [`Origin::expected`]. Each file can:
//! - hold its last byte until the test calls [`Origin::release`], so a test
//!   decides exactly which files are transferred when Complete arrives;
//! - fail in the ways real servers do ([`Fault`]): reset mid-body, answer an
//!   error status (with `Retry-After`) a number of times, ignore ranges, send
//!   no length, stall, or change its content ([`Origin::change`]).
//!
//! Every request is logged ([`Origin::requests`]) with its Range and If-Range
//! headers, so tests assert what the client asked for.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::ServerHandle,
    http::{
        StatusCode,
        header::{self, HttpDate},
    },
    web,
};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt as _};
use tokio::sync::watch;

/// How much content one body chunk carries.
const CHUNK: u64 = 64 * 1024;

/// The byte at `offset` of content generated from `seed`.
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    // splitmix64 of the 8-byte block, then the byte within it.
    let mut z = seed
        .wrapping_add(offset / 8)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // `offset % 8` is below 8: the shift keeps the wanted byte lowest.
    (z >> ((offset % 8) * 8)) as u8
}

/// The 8-byte block `block` of content generated from `seed` (byte `i` of
/// the block is `byte_at(seed, block * 8 + i)`).
pub(crate) fn block_at(seed: u64, block: u64) -> [u8; 8] {
    let mut z = seed.wrapping_add(block).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z.to_le_bytes()
}

/// `len` bytes of content generated from `seed`, starting at `start`.
pub fn content(seed: u64, start: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    fill(seed, start, len, &mut out);
    out
}

/// Appends `len` bytes of content from `seed` at `start` to `out`, a block
/// of 8 at a time (the load-test origin serves gigabytes from this).
pub fn fill(seed: u64, start: u64, len: u64, out: &mut Vec<u8>) {
    let end = start + len;
    let mut pos = start;
    while pos < end {
        let block = block_at(seed, pos / 8);
        let from = (pos % 8) as usize;
        let to = usize::try_from((end - pos).min(8 - from as u64)).unwrap_or(0) + from;
        out.extend_from_slice(block.get(from..to).unwrap_or_default());
        pos += (to - from) as u64;
    }
}

/// Checks `file` against `size` bytes generated from `seed`, byte for byte,
/// a piece at a time (no matter the size): `Ok(None)` if equal, else what
/// differs.
pub fn verify_file(seed: u64, size: u64, file: &std::path::Path) -> io::Result<Option<String>> {
    use std::io::Read as _;
    let mut reader = std::fs::File::open(file)?;
    let len = reader.metadata()?.len();
    if len != size {
        return Ok(Some(format!("{len} bytes, not {size}")));
    }
    let mut got = vec![0u8; 1 << 20];
    let mut want = Vec::with_capacity(1 << 20);
    let mut pos = 0;
    while pos < size {
        let n = usize::try_from((size - pos).min(1 << 20)).unwrap_or(0);
        let part = got.get_mut(..n).unwrap_or_default();
        reader.read_exact(part)?;
        want.clear();
        fill(seed, pos, n as u64, &mut want);
        if *part != *want {
            return Ok(Some(format!(
                "differs within bytes {pos}..{}",
                pos + n as u64
            )));
        }
        pos += n as u64;
    }
    Ok(None)
}

/// A fault to inject into a file's responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after this many body bytes.
    ResetAfter(u64),
    /// Close the connection after this many per-mille of the body (of this
    /// response, whatever its range; at most 999: it always fails).
    ResetAfterPerMille(u16),
    /// Answer this status (with an optional `Retry-After` in seconds).
    Status(u16, Option<u64>),
    /// Answer 200 with the whole entity, ignoring Range.
    IgnoreRange,
    /// Answer 200 without a Content-Length (chunked), ignoring Range.
    NoLength,
    /// Wait this long before each body chunk.
    Slow(Duration),
    /// Stop sending for this long once this many per-mille of the body (of
    /// this response) are out, then go on: a server or link that stalls.
    StallAtPerMille(u16, Duration),
    /// Send the body with `Content-Encoding: gzip` (claiming a coding the
    /// client did not accept).
    Encoded,
}

#[cfg(feature = "tls")]
type TlsConfig = rustls::ServerConfig;
#[cfg(not(feature = "tls"))]
type TlsConfig = std::convert::Infallible;

/// A file the origin serves.
#[derive(Debug)]
struct File {
    size: u64,
    seed: u64,
    version: u32,
    modified: SystemTime,
    /// Faults for the next requests, each used once, in order.
    faults: Vec<Fault>,
    /// A fault applied to every request.
    always: Option<Fault>,
    /// Hold the last byte until released (the value turns true).
    held: Option<watch::Sender<bool>>,
}

impl File {
    fn etag(&self) -> String {
        format!("\"{:x}-{}\"", self.seed, self.version)
    }

    fn last_modified(&self) -> String {
        HttpDate::from(self.modified).to_string()
    }

    /// A new version: new bytes, ETag and Last-Modified.
    fn change(&mut self) {
        self.version += 1;
        self.seed = self.seed.wrapping_add(0x5851_f42d_4c95_7f2d);
        self.modified += Duration::from_secs(60);
    }
}

/// The seed of the content served at `path` (before any change): what an
/// external origin must serve there, see [`write_file`].
pub fn seed_of(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes the `size` bytes served at `path` (see [`seed_of`]) to `file`: a
/// dataset for an external origin (nginx) that the harness can verify.
pub fn write_file(path: &str, size: u64, file: &std::path::Path) -> io::Result<()> {
    use std::io::Write as _;
    let seed = seed_of(path);
    let mut out = io::BufWriter::with_capacity(CHUNK as usize, std::fs::File::create(file)?);
    let mut buf = Vec::with_capacity(CHUNK as usize);
    let mut pos = 0;
    while pos < size {
        let n = CHUNK.min(size - pos);
        buf.clear();
        fill(seed, pos, n, &mut buf);
        out.write_all(&buf)?;
        pos += n;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// One request the origin received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The path asked for.
    pub path: String,
    /// The Range header, if any.
    pub range: Option<String>,
    /// The If-Range header, if any.
    pub if_range: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The ETag of the version the body came from (`None` for answers
    /// without a body of the file: redirects, 404, fault statuses).
    pub etag: Option<String>,
}

/// Faults drawn at random for requests without a queued fault: the load
/// test's "a fraction of requests fail" knobs. Deterministic for a seed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RandomFaults {
    /// Fraction of bodies reset at a random point (0.0 to 1.0).
    pub reset: f64,
    /// Fraction of requests answered 503.
    pub unavailable: f64,
    /// The `Retry-After` seconds of those 503s.
    pub retry_after: Option<u64>,
    /// Fraction of requests answered 200 with the whole entity, Range
    /// ignored (a server without range support).
    pub ignore_range: f64,
    /// Fraction of bodies that stall at a random point for `stall_for`.
    pub stall: f64,
    /// How long a stall lasts.
    pub stall_for: Duration,
    /// Fraction of requests before which the file's content changes (a new
    /// version: new bytes, ETag and Last-Modified), drawn independently of
    /// the faults above.
    pub change: f64,
    /// The draws' seed.
    pub seed: u64,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, File>,
    random: Option<RandomFaults>,
    /// Bytes per second each response is held to, if capped.
    bandwidth: Option<u64>,
    draws: u64,
    /// Paths answered with a 302 to another location.
    redirects: HashMap<String, String>,
    requests: Vec<Request>,
}

/// The running origin. Stops when dropped.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl Origin {
    /// Starts an origin on 127.0.0.1 with a free port, on the current actix
    /// System.
    pub fn start() -> io::Result<Self> {
        Self::start_with(None)
    }

    /// Starts an https origin with this certificate chain and private key
    /// (DER), for example a self-signed one made by the test.
    #[cfg(feature = "tls")]
    pub fn start_tls(chain: Vec<Vec<u8>>, key: Vec<u8>) -> io::Result<Self> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let chain = chain.into_iter().map(CertificateDer::from).collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start_with(Some(config))
    }

    fn start_with(tls: Option<TlsConfig>) -> io::Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(serve))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        let server = match tls {
            #[cfg(feature = "tls")]
            Some(tls) => server.bind_rustls_0_23(("127.0.0.1", 0), tls)?,
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
            None => server.bind(("127.0.0.1", 0))?,
        };
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("the origin bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(Self {
            addr,
            state,
            handle,
        })
    }

    /// The origin's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Serves `size` bytes of generated content at `path`; the seed is
    /// derived from the path ([`seed_of`]), so the same path always serves
    /// the same bytes.
    pub fn add(&self, path: &str, size: u64) {
        let seed = seed_of(path);
        let file = File {
            size,
            seed,
            version: 1,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000),
            faults: Vec::new(),
            always: None,
            held: None,
        };
        self.state().files.insert(path.to_owned(), file);
    }

    /// The bytes `path` serves now.
    pub fn expected(&self, path: &str) -> Vec<u8> {
        let state = self.state();
        state
            .files
            .get(path)
            .map(|f| content(f.seed, 0, f.size))
            .unwrap_or_default()
    }

    /// The file's current ETag.
    pub fn etag(&self, path: &str) -> Option<String> {
        self.state().files.get(path).map(File::etag)
    }

    /// Changes the content of `path` (new seed, ETag and Last-Modified), and
    /// optionally its size.
    pub fn change(&self, path: &str, size: Option<u64>) {
        if let Some(f) = self.state().files.get_mut(path) {
            f.change();
            if let Some(size) = size {
                f.size = size;
            }
        }
    }

    /// How many times the content of a file changed in all (by
    /// [`Origin::change`] and by [`RandomFaults::change`]).
    pub fn changes(&self) -> u64 {
        self.state()
            .files
            .values()
            .map(|f| u64::from(f.version - 1))
            .sum()
    }

    /// Changes the size of `path` but not its ETag or Last-Modified (a
    /// misbehaving server: same validators, other content length).
    pub fn resize(&self, path: &str, size: u64) {
        if let Some(f) = self.state().files.get_mut(path) {
            f.size = size;
        }
    }

    /// Answers requests of `from` with `302 Found` to `location` (a path or
    /// an absolute URL).
    pub fn redirect(&self, from: &str, location: &str) {
        self.state()
            .redirects
            .insert(from.to_owned(), location.to_owned());
    }

    /// Queues a fault for the next request of `path` (faults queued earlier
    /// come first).
    pub fn fail_next(&self, path: &str, fault: Fault) {
        if let Some(f) = self.state().files.get_mut(path) {
            f.faults.push(fault);
        }
    }

    /// Applies `fault` to every request of `path` (`None` clears it).
    pub fn fail_always(&self, path: &str, fault: Option<Fault>) {
        if let Some(f) = self.state().files.get_mut(path) {
            f.always = fault;
        }
    }

    /// Holds every response to `bytes_per_second` (`None`: no cap), as a
    /// slow link or a throttling server would.
    pub fn cap_bandwidth(&self, bytes_per_second: Option<u64>) {
        self.state().bandwidth = bytes_per_second;
    }

    /// Draws faults at random for every request that has none queued
    /// (`None` stops it).
    pub fn random_faults(&self, faults: Option<RandomFaults>) {
        self.state().random = faults;
    }

    /// The seed and size of what `path` serves now (for [`verify_file`]).
    pub fn content_of(&self, path: &str) -> Option<(u64, u64)> {
        self.state().files.get(path).map(|f| (f.seed, f.size))
    }

    /// Checks `file` against the content `path` serves now (see
    /// [`verify_file`]).
    pub fn verify(&self, path: &str, file: &std::path::Path) -> io::Result<Option<String>> {
        match self.content_of(path) {
            Some((seed, size)) => verify_file(seed, size, file),
            None => Ok(Some(format!("{path} is not served"))),
        }
    }

    /// Holds the last byte of `path`'s bodies until [`Origin::release`].
    pub fn hold(&self, path: &str) {
        if let Some(f) = self.state().files.get_mut(path) {
            f.held = Some(watch::channel(false).0);
        }
    }

    /// Lets held bodies of `path` finish.
    pub fn release(&self, path: &str) {
        if let Some(f) = self.state().files.get_mut(path)
            && let Some(held) = f.held.take()
        {
            held.send_replace(true);
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// The requests of `path` received so far.
    pub fn requests_of(&self, path: &str) -> Vec<Request> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Stopping is asynchronous; the returned future need not be awaited
        // for the stop to begin.
        drop(self.handle.stop(false));
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock only happens in a failing test; the
    // state is still usable for reporting.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A parsed `Range: bytes=a-b` (b inclusive, or open).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b = match b.trim() {
        "" => None,
        b => Some(b.parse().ok()?),
    };
    Some((a, b))
}

async fn serve(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    let path = req.path().to_owned();
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (range, if_range) = (header(header::RANGE), header(header::IF_RANGE));
    let mut guard = lock(&state);
    let state = &mut *guard;
    let log = |state: &mut State, status: u16, etag: Option<&str>| {
        state.requests.push(Request {
            path: path.clone(),
            range: range.clone(),
            if_range: if_range.clone(),
            status,
            etag: etag.map(str::to_owned),
        });
    };
    if let Some(location) = state.redirects.get(&path).cloned() {
        log(state, 302, None);
        return HttpResponse::Found()
            .insert_header((header::LOCATION, location))
            .finish();
    }
    let Some(file) = state.files.get_mut(&path) else {
        log(state, 404, None);
        return HttpResponse::NotFound().finish();
    };
    let mut fault = if file.faults.is_empty() {
        file.always.clone()
    } else {
        Some(file.faults.remove(0))
    };
    if fault.is_none()
        && let Some(random) = state.random
    {
        state.draws += 1;
        let draw = |n: u64| {
            let block = block_at(random.seed, state.draws * 3 + n);
            u64::from_le_bytes(block) as f64 / u64::MAX as f64
        };
        let (a, b, c) = (draw(0), draw(1), draw(2));
        let mut bound = random.unavailable;
        if a < bound {
            fault = Some(Fault::Status(503, random.retry_after));
        } else if a < {
            bound += random.reset;
            bound
        } {
            fault = Some(Fault::ResetAfterPerMille((b * 1000.0) as u16));
        } else if a < {
            bound += random.ignore_range;
            bound
        } {
            fault = Some(Fault::IgnoreRange);
        } else if a < bound + random.stall {
            fault = Some(Fault::StallAtPerMille(
                (b * 1000.0) as u16,
                random.stall_for,
            ));
        }
        if c < random.change
            && let Some(file) = state.files.get_mut(&path)
        {
            file.change();
        }
    }
    let Some(file) = state.files.get_mut(&path) else {
        log(state, 404, None);
        return HttpResponse::NotFound().finish();
    };
    let (size, seed, etag, modified) = (file.size, file.seed, file.etag(), file.last_modified());
    let held = file.held.as_ref().map(watch::Sender::subscribe);
    let cap = state.bandwidth;
    if let Some(Fault::Status(code, retry_after)) = fault {
        log(state, code, None);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        if let Some(secs) = retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        return response.finish();
    }
    let ignore_range = matches!(fault, Some(Fault::IgnoreRange | Fault::NoLength));
    let range_valid = if_range
        .as_deref()
        .is_none_or(|v| v == etag || v == modified);
    let wanted = range
        .as_deref()
        .filter(|_| !ignore_range && range_valid)
        .and_then(parse_range);
    let (status, start, end) = match wanted {
        Some((start, _)) if start >= size => {
            log(state, 416, Some(&etag));
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .insert_header((header::ETAG, etag))
                .finish();
        }
        Some((start, last)) if last.is_some_and(|l| l < start) => {
            log(state, 416, Some(&etag));
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .finish();
        }
        Some((start, last)) => {
            let end = last.map_or(size, |l| l.saturating_add(1).min(size));
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        None => (StatusCode::OK, 0, size),
    };
    log(state, status.as_u16(), Some(&etag));
    drop(guard);

    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::LAST_MODIFIED, modified));
    if !matches!(fault, Some(Fault::NoLength)) {
        // A server that ignores ranges says so.
        let ranges = if matches!(fault, Some(Fault::IgnoreRange)) {
            "none"
        } else {
            "bytes"
        };
        response.insert_header((header::ACCEPT_RANGES, ranges));
        response.no_chunking(end - start);
    }
    if matches!(fault, Some(Fault::Encoded)) {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        response.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end.saturating_sub(1)),
        ));
    }
    let reset_after = match fault {
        Some(Fault::ResetAfter(n)) => Some(start + n),
        Some(Fault::ResetAfterPerMille(per_mille)) => {
            Some(start + (end - start) * u64::from(per_mille.min(999)) / 1000)
        }
        _ => None,
    };
    let stall = match fault {
        Some(Fault::StallAtPerMille(per_mille, pause)) => Some((
            start + (end - start) * u64::from(per_mille.min(999)) / 1000,
            pause,
        )),
        _ => None,
    };
    let slow = match fault {
        Some(Fault::Slow(d)) => Some(d),
        // A capped connection: one chunk per CHUNK/bandwidth seconds.
        _ => cap.map(|bytes_per_second| {
            Duration::from_secs_f64(CHUNK as f64 / bytes_per_second.max(1) as f64)
        }),
    };
    let pace = Pace { slow, stall };
    response.streaming(body(seed, start, end, size, reset_after, pace, held))
}

/// How a body is slowed: a wait before each chunk, and one stall (at an
/// offset, for a while).
#[derive(Clone, Copy)]
struct Pace {
    slow: Option<Duration>,
    stall: Option<(u64, Duration)>,
}

/// The body from `start` to `end`: generated chunk by chunk, cut at
/// `reset_after`, slowed or stalled, and holding the entity's last byte
/// while `held`.
fn body(
    seed: u64,
    start: u64,
    end: u64,
    size: u64,
    reset_after: Option<u64>,
    pace: Pace,
    held: Option<watch::Receiver<bool>>,
) -> impl Stream<Item = Result<Bytes, io::Error>> {
    let Pace { slow, stall } = pace;
    stream::unfold(start, move |pos| {
        let held = held.clone();
        async move {
            if pos >= end {
                return None;
            }
            if reset_after.is_some_and(|r| pos >= r) {
                let err = io::Error::new(io::ErrorKind::ConnectionReset, "injected reset");
                return Some((Err(err), end));
            }
            if let Some(d) = slow {
                actix_rt::time::sleep(d).await;
            }
            let mut stop = (pos + CHUNK).min(end);
            if let Some(r) = reset_after {
                stop = stop.min(r.max(pos + 1));
            }
            if let Some((at, pause)) = stall {
                // Chunks are cut at `at`, so one starts there.
                if pos == at {
                    actix_rt::time::sleep(pause).await;
                }
                if pos < at {
                    stop = stop.min(at);
                }
            }
            if let Some(held) = &held
                && end == size
            {
                if pos + 1 == size {
                    // Everything but the last byte is out: wait (a dropped
                    // sender also ends the wait).
                    let mut held = held.clone();
                    let _ = held.wait_for(|released| *released).await;
                } else {
                    stop = stop.min(size - 1);
                }
            }
            Some((Ok(Bytes::from(content(seed, pos, stop - pos))), stop))
        }
    })
    .boxed_local()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn blocks_and_bytes_agree() {
        for seed in [0, 7, u64::MAX] {
            for (start, len) in [(0, 0), (0, 1), (3, 17), (8, 8), (13, 1000)] {
                let by_byte: Vec<u8> = (start..start + len).map(|i| byte_at(seed, i)).collect();
                assert_eq!(content(seed, start, len), by_byte, "{seed} {start} {len}");
            }
        }
    }

    #[test]
    fn a_file_is_verified_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("ferry-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        let mut bytes = content(5, 0, 3_000_000);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(verify_file(5, 3_000_000, &file).unwrap(), None);
        bytes[2_500_000] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(verify_file(5, 3_000_000, &file).unwrap().is_some());
        assert!(verify_file(5, 3_000_001, &file).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
