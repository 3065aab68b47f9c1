//! The engine's counters, in the Prometheus text format
//! ([`crate::Engine::metrics_text`]). Updating one is an atomic add: cheap
//! enough for every chunk.

use std::time::Duration;

use ferry_core::{ErrorClass, ErrorContext, JobState};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    class: &'static str,
    context: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArbiterLabels {
    arbiter: u64,
}

/// Every metric of one engine.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    bytes: Counter,
    files: Counter,
    errors: Family<ErrorLabels, Counter>,
    active: Gauge,
    store_writes: Histogram,
    jobs: Family<StateLabels, Gauge>,
    placed: Family<ArbiterLabels, Gauge>,
    /// Batches of files made durable by one syncfs (the syncer adds).
    pub(crate) syncfs_batches: Counter,
    /// Transfers started on a slot their job kept from its previous one.
    pub(crate) kept_slots: Counter,
}

/// The states a listed job can be in (final jobs are not listed).
const LISTED_STATES: [JobState; 7] = [
    JobState::Queued,
    JobState::Connecting,
    JobState::Transferring,
    JobState::Suspended,
    JobState::Error,
    JobState::TransientError,
    JobState::Transferred,
];

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let bytes = Counter::default();
        registry.register(
            "transferred_bytes",
            "Bytes received from servers (written to temp files)",
            bytes.clone(),
        );
        let files = Counter::default();
        registry.register(
            "transferred_files",
            "Files whose every byte is durable",
            files.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "transfer_errors",
            "Failed transfer attempts by class and context",
            errors.clone(),
        );
        let active = Gauge::default();
        registry.register("active_transfers", "Transfers running now", active.clone());
        // 50 us to ~3 s: a synced RocksDB write is about a millisecond on SSD.
        let store_writes = Histogram::new([
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5,
        ]);
        registry.register(
            "store_write_seconds",
            "Latency of one group-committed store write",
            store_writes.clone(),
        );
        let jobs = Family::<StateLabels, Gauge>::default();
        registry.register("jobs", "Jobs by state (final jobs excluded)", jobs.clone());
        let placed = Family::<ArbiterLabels, Gauge>::default();
        registry.register(
            "placed_jobs",
            "Jobs whose transfers run on each arbiter (0: the engine's home)",
            placed.clone(),
        );
        let syncfs_batches = Counter::default();
        registry.register(
            "syncfs_batches",
            "Batches of transferred files made durable by one syncfs",
            syncfs_batches.clone(),
        );
        let kept_slots = Counter::default();
        registry.register(
            "kept_slots",
            "Transfers started on a slot their job kept from its previous transfer, no other request waiting",
            kept_slots.clone(),
        );
        Self {
            registry,
            bytes,
            files,
            errors,
            active,
            store_writes,
            jobs,
            placed,
            syncfs_batches,
            kept_slots,
        }
    }

    /// The gauge of the jobs placed on arbiter `index` (0: home).
    pub(crate) fn placed(&self, index: usize) -> Gauge {
        self.placed
            .get_or_create(&ArbiterLabels {
                arbiter: index as u64,
            })
            .clone()
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.bytes.inc_by(bytes as u64);
    }

    pub(crate) fn file_transferred(&self) {
        self.files.inc();
    }

    pub(crate) fn transfer_failed(&self, class: ErrorClass, context: ErrorContext) {
        let class = match class {
            ErrorClass::Transient => "transient",
            ErrorClass::Fatal => "fatal",
        };
        self.errors
            .get_or_create(&ErrorLabels {
                class,
                context: context.as_str(),
            })
            .inc();
    }

    /// Counts a running transfer until the guard drops.
    pub(crate) fn transfer_started(&self) -> ActiveGuard {
        self.active.inc();
        ActiveGuard(self.active.clone())
    }

    pub(crate) fn store_write(&self, took: Duration) {
        self.store_writes.observe(took.as_secs_f64());
    }

    /// The text exposition, with the job counts of this moment.
    pub(crate) fn render(&self, states: impl IntoIterator<Item = JobState>) -> String {
        let mut counts = [0i64; LISTED_STATES.len()];
        for state in states {
            if let Some(i) = LISTED_STATES.iter().position(|s| *s == state)
                && let Some(count) = counts.get_mut(i)
            {
                *count += 1;
            }
        }
        for (state, count) in LISTED_STATES.iter().zip(counts) {
            self.jobs
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the active-transfer gauge when dropped.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
