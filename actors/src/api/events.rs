//! The event log behind `GET /v1/events`: one engine subscription feeds a
//! bounded ring of events with ids, which every SSE client reads from its own
//! position. A client that reconnects with `Last-Event-ID` gets what it
//! missed while that is still in the ring; past that, a `gap` event tells it
//! to re-read the jobs' state.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use ferry_core::{JobId, JobState, Principal};
use tokio::sync::watch;

use super::json;
use crate::{Engine, Event, EventKind};

/// How many events the ring keeps (the API promises at least 10,000).
pub const EVENT_BUFFER: usize = 16_384;

/// An SSE comment this often keeps idle connections open through proxies and
/// finds clients that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Debug)]
struct Stored {
    id: u64,
    /// `None`: a gap, for every client.
    event: Option<(String, JobId, json::Event)>,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Stored>,
}

/// The ring and who waits on it.
#[derive(Debug)]
pub(crate) struct EventLog {
    /// Distinguishes this process's ids from an earlier run's.
    run: u64,
    ring: Mutex<Ring>,
    /// The id of the newest event (0: none yet).
    newest: watch::Sender<u64>,
    /// The id of the newest event that is not a `file_transferred` (or a
    /// gap): what wakes a client that asked for job events only, so that
    /// a job of thousands of files does not wake it once per file.
    newest_job: watch::Sender<u64>,
    /// The engine stopped: streams end once they have sent everything.
    closed: AtomicBool,
}

pub(crate) fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::JobTransferred => "job_transferred",
        EventKind::JobError => "job_error",
        EventKind::JobModified => "job_modified",
        EventKind::FileTransferred(_) => "file_transferred",
    }
}

fn to_json(event: &Event) -> json::Event {
    json::Event {
        kind: kind_name(event.kind).to_owned(),
        job: event.job.to_string(),
        state: event.state.as_str().to_owned(),
        file: match event.kind {
            EventKind::FileTransferred(file) => Some(file.0),
            _ => None,
        },
    }
}

impl EventLog {
    /// A log fed by `engine`'s events from now on (on the current arbiter).
    pub(crate) fn start(engine: &Engine) -> Arc<Self> {
        let log = Arc::new(Self {
            run: uuid::Uuid::now_v7().as_u64_pair().1,
            ring: Mutex::new(Ring::default()),
            newest: watch::channel(0).0,
            newest_job: watch::channel(0).0,
            closed: AtomicBool::new(false),
        });
        let feeder = log.clone();
        let engine = engine.clone();
        actix_rt::spawn(async move {
            let mut first = true;
            // The engine drops a subscriber that falls too far behind:
            // subscribe again and tell clients they missed events. When the
            // engine is gone, subscribing fails and the log closes.
            while let Ok(mut events) = engine.subscribe().await {
                if !first {
                    feeder.store(None);
                }
                first = false;
                // The engine first replays jobs already TRANSFERRED or in
                // ERROR; they enter the ring like any event.
                while let Some(event) = events.next().await {
                    feeder.push(&event);
                }
            }
            feeder.closed.store(true, Ordering::Release);
            feeder.newest.send_modify(|_| {});
            feeder.newest_job.send_modify(|_| {});
        });
        log
    }

    fn push(&self, event: &Event) {
        self.store(Some((event.owner.clone(), event.job, to_json(event))));
    }

    fn store(&self, event: Option<(String, JobId, json::Event)>) {
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let id = ring.events.back().map_or(1, |e| e.id + 1);
        if ring.events.len() >= EVENT_BUFFER {
            ring.events.pop_front();
        }
        // A gap, or an event of a job as a whole (not of one file).
        let job_level = event.as_ref().is_none_or(|(_, _, e)| e.file.is_none());
        ring.events.push_back(Stored { id, event });
        drop(ring);
        self.newest.send_replace(id);
        if job_level {
            self.newest_job.send_replace(id);
        }
    }

    /// The SSE id of event `id` of this run.
    fn sse_id(&self, id: u64) -> String {
        format!("{:x}-{id}", self.run)
    }

    /// Where a client that last saw `last` (its `Last-Event-ID`) resumes:
    /// the id after which to send, and whether events were lost.
    fn resume_point(&self, last: Option<&str>) -> (u64, bool) {
        let newest = *self.newest.borrow();
        let Some(last) = last else {
            return (newest, false);
        };
        let oldest = self
            .ring
            .lock()
            .ok()
            .and_then(|r| r.events.front().map(|e| e.id))
            .unwrap_or(newest + 1);
        let parsed = last.split_once('-').and_then(|(run, n)| {
            Some((u64::from_str_radix(run, 16).ok()?, n.parse::<u64>().ok()?))
        });
        match parsed {
            // Ours and still (or just past) the ring: nothing lost.
            Some((run, n)) if run == self.run && n <= newest && n + 1 >= oldest => (n, false),
            // Ours but fallen out of the ring, from an earlier run, or
            // garbage: send everything still here, after a gap.
            _ => (oldest.saturating_sub(1), true),
        }
    }

    /// Events after `after` that `who` may see (of `job`, if given, and of
    /// the `types` asked for), formatted for SSE, and the id of the last
    /// one examined.
    fn read(
        &self,
        after: u64,
        who: &Principal,
        job: Option<JobId>,
        types: Types,
    ) -> (Vec<Bytes>, u64) {
        let Ok(ring) = self.ring.lock() else {
            return (Vec::new(), after);
        };
        let mut out = Vec::new();
        let mut last = after;
        let mut last_sent = after;
        // Ids are consecutive: skip straight to the first one after `after`.
        let skip = ring.events.front().map_or(0, |front| {
            usize::try_from(after.saturating_sub(front.id - 1)).unwrap_or(usize::MAX)
        });
        for stored in ring.events.iter().skip(skip).filter(|e| e.id > after) {
            last = stored.id;
            match &stored.event {
                None => {
                    out.push(gap(Some(&self.sse_id(stored.id))));
                    last_sent = stored.id;
                }
                Some((owner, event_job, event))
                    if who.may_access(owner)
                        && job.is_none_or(|j| j == *event_job)
                        && types.admits(&event.kind) =>
                {
                    out.push(sse(Some(&self.sse_id(stored.id)), event));
                    last_sent = stored.id;
                }
                Some(_) => {}
            }
        }
        if last != last_sent {
            // An id alone moves the client's Last-Event-ID past events it
            // may not see, so a reconnect neither repeats nor misses any.
            out.push(Bytes::from(format!("id: {}\n\n", self.sse_id(last))));
        }
        (out, last)
    }
}

/// Which event types a client asked for (`?types=`; all by default). A
/// `gap` is always sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Types {
    job_transferred: bool,
    job_error: bool,
    job_modified: bool,
    file_transferred: bool,
}

impl Default for Types {
    fn default() -> Self {
        Self {
            job_transferred: true,
            job_error: true,
            job_modified: true,
            file_transferred: true,
        }
    }
}

impl Types {
    /// Parses a comma-separated list of event types; `Err` names the first
    /// unknown one (empty: the list names none).
    pub(crate) fn parse(list: &str) -> Result<Self, String> {
        let mut types = Self {
            job_transferred: false,
            job_error: false,
            job_modified: false,
            file_transferred: false,
        };
        let mut any = false;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            any = true;
            match name {
                "job_transferred" => types.job_transferred = true,
                "job_error" => types.job_error = true,
                "job_modified" => types.job_modified = true,
                "file_transferred" => types.file_transferred = true,
                other => return Err(other.to_owned()),
            }
        }
        if !any {
            return Err(String::new());
        }
        Ok(types)
    }

    fn admits(self, kind: &str) -> bool {
        match kind {
            "job_transferred" => self.job_transferred,
            "job_error" => self.job_error,
            "job_modified" => self.job_modified,
            "file_transferred" => self.file_transferred,
            _ => true,
        }
    }
}

/// The `gap` message: events were missed.
fn gap(id: Option<&str>) -> Bytes {
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!(
        "{id}event: gap\ndata: {{\"type\":\"gap\",\"message\":\"events were missed: re-read the jobs\"}}\n\n"
    ))
}

/// One SSE message.
fn sse(id: Option<&str>, event: &json::Event) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_default();
    let mut text = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        text.push_str("id: ");
        text.push_str(id);
        text.push('\n');
    }
    text.push_str("event: ");
    text.push_str(&event.kind);
    text.push_str("\ndata: ");
    text.push_str(&data);
    text.push_str("\n\n");
    Bytes::from(text)
}

/// The byte stream of one SSE client: the snapshot (its jobs already
/// TRANSFERRED or in ERROR, without ids), a `gap` if it missed events that
/// are gone, then the events after its position, live.
pub(crate) async fn stream(
    log: Arc<EventLog>,
    engine: Engine,
    who: Principal,
    job: Option<JobId>,
    types: Types,
    last_event_id: Option<String>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let (position, missed) = log.resume_point(last_event_id.as_deref());
    let mut first = Vec::new();
    // A comment first: the client sees the stream is open at once.
    first.push(Bytes::from_static(b": ferry events\n\n"));
    // The client's position, at once: a reconnect resumes from here even
    // if nothing it may see happened in between.
    first.push(Bytes::from(format!("id: {}\n\n", log.sse_id(position))));
    if missed {
        first.push(gap(None));
    }
    let jobs = engine.list(&who, false).await.unwrap_or_default();
    for view in jobs {
        if job.is_some_and(|j| j != view.id) {
            continue;
        }
        let kind = match view.state {
            JobState::Transferred => EventKind::JobTransferred,
            JobState::Error => EventKind::JobError,
            _ => continue,
        };
        if !types.admits(kind_name(kind)) {
            continue;
        }
        let event = Event {
            seq: 0,
            job: view.id,
            owner: view.owner.clone(),
            state: view.state,
            kind,
        };
        first.push(sse(None, &to_json(&event)));
    }
    let newest = if types.file_transferred {
        log.newest.subscribe()
    } else {
        log.newest_job.subscribe()
    };
    let state = (log, newest, who, job, position, VecDeque::from(first));
    futures_util::stream::unfold(state, move |mut state| async move {
        let (log, newest, who, job, position, pending) = &mut state;
        loop {
            if let Some(bytes) = pending.pop_front() {
                return Some((Ok(bytes), state));
            }
            let (batch, last) = log.read(*position, who, *job, types);
            *position = last;
            if !batch.is_empty() {
                pending.extend(batch);
                continue;
            }
            if log.closed.load(Ordering::Acquire) {
                // The engine stopped: everything is sent, the stream ends.
                return None;
            }
            match tokio::time::timeout(KEEPALIVE, newest.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => pending.push_back(Bytes::from_static(b": keepalive\n\n")),
            }
        }
    })
}
