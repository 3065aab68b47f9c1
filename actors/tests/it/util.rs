//! The harness: an origin, an engine on a temp data dir, a download dir, and
//! waiting for events with a deadline (never sleeping for state).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use ferry_actors::{Engine, EngineConfig, Event, EventKind, Events};
use ferry_bench::origin::Origin;
use ferry_core::{FileSpec, JobId, JobSpec, Principal, Property};
use tempfile::TempDir;

/// How long any wait may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn alice() -> Principal {
    Principal::user("alice")
}

pub(crate) struct Harness {
    pub(crate) origin: Origin,
    pub(crate) data: TempDir,
    pub(crate) downloads: TempDir,
    pub(crate) engine: Engine,
    pub(crate) events: Events,
}

pub(crate) fn config(data: &Path) -> EngineConfig {
    let mut config = EngineConfig::new(data);
    config.core.retry_delay_floor = Duration::from_millis(50);
    config.arbiters = 2;
    config.checkpoint_bytes = 256 * 1024;
    config.idle_timeout = Duration::from_secs(10);
    config.connect_timeout = Duration::from_secs(10);
    config
}

impl Harness {
    pub(crate) async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A harness whose engine config `adjust` changes.
    pub(crate) async fn with(adjust: impl FnOnce(&mut EngineConfig)) -> Self {
        let origin = Origin::start().unwrap();
        let data = TempDir::new().unwrap();
        let downloads = TempDir::new().unwrap();
        let mut config = config(data.path());
        adjust(&mut config);
        let engine = Engine::start(config).await.unwrap();
        let events = engine.subscribe().await.unwrap();
        Self {
            origin,
            data,
            downloads,
            engine,
            events,
        }
    }

    /// Stops the engine and starts a new one on the same data dir.
    pub(crate) async fn restart(&mut self) {
        self.engine.clone().shutdown().await.unwrap();
        self.engine = Engine::start(config(self.data.path())).await.unwrap();
        self.events = self.engine.subscribe().await.unwrap();
    }

    pub(crate) fn local(&self, name: &str) -> PathBuf {
        self.downloads.path().join(name)
    }

    /// A job of alice's with these files (`name` served at `/name` with
    /// `size` bytes, saved as `name` in the download dir), not resumed.
    pub(crate) async fn job(&self, files: &[(&str, u64)]) -> JobId {
        let job = self
            .engine
            .create_job(&alice(), JobSpec::download("test"))
            .await
            .unwrap();
        let specs = files
            .iter()
            .map(|(name, size)| {
                let path = format!("/{name}");
                self.origin.add(&path, *size);
                FileSpec::new(
                    self.origin.url(&path),
                    self.local(name).to_string_lossy().into_owned(),
                )
            })
            .collect();
        self.engine.add_files(&alice(), job, specs).await.unwrap();
        self.fast_retries(job).await;
        job
    }

    /// A resumed job of alice's with one file whose body the origin holds
    /// (its request has arrived): a transfer that stays under way.
    pub(crate) async fn held_job(&self, name: &str, size: u64) -> JobId {
        let job = self.job(&[(name, size)]).await;
        let path = format!("/{name}");
        self.origin.hold(&path);
        self.engine.resume(&alice(), job).await.unwrap();
        self.requested(&path).await;
        job
    }

    /// A job of alice's with one file from any `remote` URL, saved as
    /// `name` in the download dir, not resumed.
    pub(crate) async fn job_from(&self, remote: String, name: &str) -> JobId {
        let job = self
            .engine
            .create_job(&alice(), JobSpec::download(name))
            .await
            .unwrap();
        let local = self.local(name).to_string_lossy().into_owned();
        self.engine
            .add_files(&alice(), job, vec![FileSpec::new(remote, local)])
            .await
            .unwrap();
        self.fast_retries(job).await;
        job
    }

    /// A 50 ms minimum retry delay, so retries do not slow the tests.
    async fn fast_retries(&self, job: JobId) {
        self.engine
            .set(
                &alice(),
                job,
                Property::MinRetryDelay(Duration::from_millis(50)),
            )
            .await
            .unwrap();
    }

    /// Waits for the first event of `job` that `matches`.
    pub(crate) async fn event(&mut self, job: JobId, matches: impl Fn(&Event) -> bool) -> Event {
        let wait = async {
            loop {
                let event = self.events.next().await.expect("event stream ended");
                if event.job == job && matches(&event) {
                    return event;
                }
            }
        };
        actix_rt::time::timeout(DEADLINE, wait)
            .await
            .expect("no such event before the deadline")
    }

    /// Polls until `job` is in `state` (for jobs that finish together,
    /// whose events could come in either order).
    pub(crate) async fn in_state(&self, job: JobId, state: ferry_core::JobState) {
        let start = std::time::Instant::now();
        loop {
            let now = self.engine.job(&alice(), job).await.unwrap().state;
            if now == state {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "job stuck in {now}, not {state}"
            );
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub(crate) async fn transferred(&mut self, job: JobId) {
        self.event(job, |e| e.kind == EventKind::JobTransferred)
            .await;
    }

    /// Waits until the origin has served a request of `path`.
    pub(crate) async fn requested(&self, path: &str) {
        let start = std::time::Instant::now();
        while self.origin.requests_of(path).is_empty() {
            assert!(start.elapsed() < DEADLINE, "{path} never requested");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Names in the download dir.
    pub(crate) fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.downloads.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Asserts the file at `name` holds exactly what the origin serves.
    pub(crate) fn assert_file(&self, name: &str) {
        let got = std::fs::read(self.local(name)).unwrap();
        let want = self.origin.expected(&format!("/{name}"));
        assert_eq!(got.len(), want.len(), "{name}: length");
        assert!(got == want, "{name}: content differs");
    }
}

/// A loopback port nothing listens on (bound, noted, closed).
pub(crate) fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
