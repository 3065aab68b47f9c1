//! The API's JSON documents. They derive both `Serialize` and `Deserialize`
//! so that clients (the `ferry` CLI) read exactly what the server writes.

use std::time::Duration;

use ferry_core::{
    Answer, CancelAnswer, CompleteAnswer, FileFailure, FileView, JobError, JobType, JobView,
    NotifyCommand, Priority, UtcTime,
};
use serde::{Deserialize, Serialize};

/// A job (`GET /v1/jobs/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id (a UUID).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// `download`, `upload` or `upload_reply`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `foreground`, `high`, `normal` or `low`.
    pub priority: String,
    /// `queued`, `connecting`, `transferring`, `suspended`, `error`,
    /// `transient_error`, `transferred`, `acknowledged` or `cancelled`.
    pub state: String,
    /// The owner's user name.
    pub owner: String,
    /// Bytes and files.
    pub progress: Progress,
    /// RFC 3339 times.
    pub times: Times,
    /// The error object (only in `error` and `transient_error`).
    pub error: Option<Error>,
    /// Failed transfer attempts so far (never reset).
    pub error_count: u64,
    /// Minimum delay before a transient error is retried, in seconds.
    pub min_retry_delay_secs: u64,
    /// Time without progress before a transient error turns fatal, in
    /// seconds.
    pub no_progress_timeout_secs: u64,
    /// Most time the job may spend connecting or transferring, in seconds.
    pub max_download_time_secs: u64,
    /// Files transferred at once.
    pub parallel_files: u32,
    /// The job's own bandwidth cap in bytes per second (on top of the
    /// engine's); null: none.
    #[serde(default)]
    pub max_bytes_per_second: Option<u64>,
    /// The program run when the job is transferred or fails.
    pub notify_command: Option<Notify>,
    /// A Complete could not rename some files and waits to be called again.
    pub commit_stalled: bool,
    /// Complete's or Cancel's answer, once the job is final.
    pub answer: Option<FinalAnswer>,
    /// Why the job is not transferring (absent while it transfers freely
    /// and once it is transferred or final; `throttled` while a cap holds
    /// a transferring job back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The files (in `GET /v1/jobs/{id}` and the answers about one job,
    /// unless asked with `?files=false`; lists leave them out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<File>>,
}

/// `GET /v1/jobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    /// The jobs, without their files.
    pub jobs: Vec<Job>,
}

/// `GET /v1/jobs/{id}/files`, and the files `POST /v1/jobs/{id}/files`
/// added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    /// The files.
    pub files: Vec<File>,
}

/// A job's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Sum of the files' sizes; null while a size is unknown.
    pub bytes_total: Option<u64>,
    /// Bytes received so far.
    pub bytes_transferred: u64,
    /// Number of files.
    pub files_total: usize,
    /// Files whose bytes are all transferred.
    pub files_transferred: usize,
}

/// A job's times, RFC 3339 in UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Times {
    /// Creation.
    pub created: String,
    /// Last change.
    pub modified: String,
    /// When the job last became transferred.
    pub transfer_completed: Option<String>,
}

/// A job's error object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// `queue_manager`, `local_file`, `remote_file`, `transport`,
    /// `remote_application`.
    pub context: String,
    /// A stable code (`http_404`, `connection_refused`, ...).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// The file's id, when the error belongs to one.
    pub file: Option<u32>,
}

/// A notify command (never run through a shell).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// Absolute path of the program.
    pub program: String,
    /// Its arguments, passed as given.
    #[serde(default)]
    pub args: Vec<String>,
}

/// One file of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Its id within the job (0, 1, 2, ... in the order added).
    pub id: u32,
    /// Remote URL.
    pub remote: String,
    /// Final local name.
    pub local: String,
    /// Size; null while unknown.
    pub bytes_total: Option<u64>,
    /// Bytes received so far.
    pub bytes_transferred: u64,
    /// Every byte is durable: Complete will publish it.
    pub transferred: bool,
    /// Published at its final name by Complete.
    pub completed: bool,
}

/// The answer of the Complete or Cancel that ended a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum FinalAnswer {
    /// Complete's answer.
    Complete(CompleteResult),
    /// Cancel's answer.
    Cancel(CancelResult),
}

/// What Complete did (`POST /v1/jobs/{id}/complete`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteResult {
    /// `complete`, `partial_complete` or `unable_to_delete_files`.
    pub result: String,
    /// Each file and what became of it.
    pub files: Vec<FileOutcome>,
    /// Temp files that could not be deleted.
    pub undeleted: Vec<Failure>,
}

/// One file in Complete's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOutcome {
    /// The file's id.
    pub id: u32,
    /// Its final name.
    pub local: String,
    /// `saved` (published at its final name) or `dropped` (not transferred
    /// before Complete: its temp file deleted).
    pub outcome: String,
}

/// What Cancel did (`POST /v1/jobs/{id}/cancel`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResult {
    /// `ok` or `unable_to_delete_files`.
    pub result: String,
    /// `command` (a caller's Cancel) or `inactivity`.
    pub reason: String,
    /// Temp files that could not be deleted.
    pub undeleted: Vec<Failure>,
}

/// A file a filesystem step failed for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The file's id.
    pub file: u32,
    /// The path concerned.
    pub path: String,
    /// The cause.
    pub cause: String,
}

/// An error answer: `{"error": CODE, "message": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// For `rename_failed`: each file that could not be published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<Failure>,
}

/// `POST /v1/jobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// Display name (at most 256 characters).
    pub name: String,
    /// `download` (the default; uploads are not served yet).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `foreground`, `high`, `normal` (default) or `low`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Description (at most 1,024 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Files to add with the job (as `POST /v1/jobs/{id}/files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<AddFiles>,
    /// Properties to set (as `PATCH /v1/jobs/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<PatchJob>,
    /// Queue the job at once (as `POST /v1/jobs/{id}/resume`). The job,
    /// its files, properties and state are then one durable write, and a
    /// refusal of any part creates nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
}

/// A file to add (`POST /v1/jobs/{id}/files`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFile {
    /// An absolute http or https URL.
    pub remote: String,
    /// The absolute path the file appears at on Complete.
    pub local: String,
}

/// The body of `POST /v1/jobs/{id}/files`: one file or a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AddFiles {
    /// One file.
    One(AddFile),
    /// Several, all or none.
    Many(Vec<AddFile>),
}

/// `PATCH /v1/jobs/{id}`: the properties to change, all or none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchJob {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Minimum retry delay in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_delay_secs: Option<u64>,
    /// No-progress timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_progress_timeout_secs: Option<u64>,
    /// Maximum download time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_download_time_secs: Option<u64>,
    /// Files transferred at once (1 to 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_files: Option<u32>,
    /// The job's own bandwidth cap, bytes per second (at least 1); `null`
    /// lifts it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub max_bytes_per_second: Option<Option<u64>>,
    /// The notify command; `null` removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub notify_command: Option<Option<Notify>>,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// An event on `GET /v1/events` (the SSE `data:` line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `job_transferred`, `job_error`, `job_modified`, `file_transferred`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The job's id.
    pub job: String,
    /// The job's state after the event.
    pub state: String,
    /// The file, for `file_transferred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<u32>,
}

/// RFC 3339 (UTC, milliseconds) of a time.
pub fn rfc3339(time: UtcTime) -> String {
    let nanos = i128::from(time.unix_millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| time.unix_millis().to_string())
}

/// A priority from its API name.
pub fn parse_priority(name: &str) -> Option<Priority> {
    [
        Priority::Foreground,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ]
    .into_iter()
    .find(|p| p.as_str() == name)
}

/// A job type from its API name.
pub fn parse_job_type(name: &str) -> Option<JobType> {
    [JobType::Download, JobType::Upload, JobType::UploadReply]
        .into_iter()
        .find(|t| t.as_str() == name)
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl Job {
    /// The JSON of a job; `files` only for single-job answers.
    pub fn from_view(view: &JobView, files: Option<&[FileView]>) -> Self {
        Self {
            id: view.id.to_string(),
            name: view.name.clone(),
            description: view.description.clone(),
            kind: view.kind.as_str().to_owned(),
            priority: view.priority.as_str().to_owned(),
            state: view.state.as_str().to_owned(),
            owner: view.owner.clone(),
            progress: Progress {
                bytes_total: view.bytes_total,
                bytes_transferred: view.bytes_transferred,
                files_total: view.files_total,
                files_transferred: view.files_transferred,
            },
            times: Times {
                created: rfc3339(view.created),
                modified: rfc3339(view.modified),
                transfer_completed: view.transferred_at.map(rfc3339),
            },
            error: view.error.as_ref().map(Error::from_core),
            error_count: view.error_count,
            min_retry_delay_secs: secs(view.min_retry_delay),
            no_progress_timeout_secs: secs(view.no_progress_timeout),
            max_download_time_secs: secs(view.max_download_time),
            parallel_files: view.parallel_files,
            max_bytes_per_second: view.max_bytes_per_second,
            notify_command: view.notify_command.as_ref().map(Notify::from_core),
            commit_stalled: view.commit_stalled,
            answer: view.answer.as_ref().map(|answer| match answer {
                Answer::Complete(a) => {
                    FinalAnswer::Complete(CompleteResult::from_core(a, files.unwrap_or(&[])))
                }
                Answer::Cancel(a) => FinalAnswer::Cancel(CancelResult::from_core(a)),
            }),
            waiting: view.waiting.as_ref().map(Waiting::from_core),
            files: files.map(|files| files.iter().map(File::from_core).collect()),
        }
    }
}

/// Why a job is not transferring. `reason` is one of `suspended_by_user`,
/// `no_files`, `queued`, `waiting_for_slot` (`behind`: the highest priority
/// holding one of the `slots` global slots), `host_busy` (`host` already
/// has `limit` transfers), `retry_at` (`next_attempt`, after `error`;
/// without `next_attempt` the job waits for its host to answer again),
/// `error` (waits for a Resume or Cancel after `error`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiting {
    /// The machine-readable reason.
    pub reason: String,
    /// `retry_at`: when the next attempt is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// `retry_at` and `error`: the error's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `waiting_for_slot`: the highest priority holding a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
    /// `waiting_for_slot`: the global budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<usize>,
    /// `host_busy`: the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `host_busy`: transfers at once per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `schedule_window`: when the pause ends (RFC 3339; absent: the
    /// schedule never ends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// `throttled`: the cap holding the job's transfers back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_second: Option<u64>,
}

impl Waiting {
    fn from_core(waiting: &ferry_core::Waiting) -> Self {
        use ferry_core::Waiting as W;
        let mut out = Self {
            reason: waiting.reason().to_owned(),
            ..Self::default()
        };
        match waiting {
            W::RetryAt { at, error } => {
                out.next_attempt = at.map(rfc3339);
                out.error = Some(error.clone());
            }
            W::Error { error } => out.error = Some(error.clone()),
            W::ForSlot { behind, slots } => {
                out.behind = Some(behind.as_str().to_owned());
                out.slots = Some(*slots);
            }
            W::HostBusy { host, limit } => {
                out.host = Some(host.clone());
                out.limit = Some(*limit);
            }
            W::ScheduleWindow { until } => out.until = until.map(rfc3339),
            W::Throttled {
                max_bytes_per_second,
            } => out.max_bytes_per_second = Some(*max_bytes_per_second),
            W::SuspendedByUser | W::NoFiles | W::Queued => {}
        }
        out
    }
}

impl Error {
    fn from_core(error: &JobError) -> Self {
        Self {
            context: error.context.as_str().to_owned(),
            code: error.code.clone(),
            message: error.message.clone(),
            file: error.file.map(|f| f.0),
        }
    }
}

impl Notify {
    fn from_core(cmd: &NotifyCommand) -> Self {
        Self {
            program: cmd.program.clone(),
            args: cmd.args.clone(),
        }
    }

    /// The core's notify command.
    pub fn to_core(&self) -> NotifyCommand {
        NotifyCommand {
            program: self.program.clone(),
            args: self.args.clone(),
        }
    }
}

impl File {
    /// The JSON of a file.
    pub fn from_core(file: &FileView) -> Self {
        Self {
            id: file.id.0,
            remote: file.remote.clone(),
            local: file.local.clone(),
            bytes_total: file.bytes_total,
            bytes_transferred: file.bytes_transferred,
            transferred: file.transferred,
            completed: file.completed,
        }
    }
}

impl Failure {
    /// The JSON of a failed file step.
    pub fn from_core(failure: &FileFailure) -> Self {
        Self {
            file: failure.file.0,
            path: failure.path.clone(),
            cause: failure.cause.clone(),
        }
    }
}

impl CompleteResult {
    /// Complete's answer, with the files' names from `files` (ids without a
    /// view keep an empty name).
    pub fn from_core(answer: &CompleteAnswer, files: &[FileView]) -> Self {
        // One lookup table, not a scan per file: 10,000 files made that
        // scan 50 million comparisons.
        let names: std::collections::HashMap<ferry_core::FileId, &str> =
            files.iter().map(|f| (f.id, f.local.as_str())).collect();
        let local = |id: ferry_core::FileId| names.get(&id).copied().unwrap_or_default().to_owned();
        let mut outcomes: Vec<FileOutcome> = answer
            .saved
            .iter()
            .map(|id| (id, "saved"))
            .chain(answer.dropped.iter().map(|id| (id, "dropped")))
            .map(|(id, outcome)| FileOutcome {
                id: id.0,
                local: local(*id),
                outcome: outcome.to_owned(),
            })
            .collect();
        outcomes.sort_by_key(|o| o.id);
        Self {
            result: answer.result.as_str().to_owned(),
            files: outcomes,
            undeleted: answer.undeleted.iter().map(Failure::from_core).collect(),
        }
    }
}

impl CancelResult {
    /// Cancel's answer.
    pub fn from_core(answer: &CancelAnswer) -> Self {
        Self {
            result: answer.result.as_str().to_owned(),
            reason: answer.reason.as_str().to_owned(),
            undeleted: answer.undeleted.iter().map(Failure::from_core).collect(),
        }
    }
}

/// `GET /v1/quotas`: the quotas that apply to the caller, and its use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Unfinished jobs an owner may have.
    pub max_jobs_per_owner: usize,
    /// Files a job may hold.
    pub max_files_per_job: usize,
    /// The caller's jobs neither acknowledged nor cancelled.
    pub unfinished_jobs: usize,
    /// The caller is an admin: neither limit applies.
    pub exempt: bool,
}

impl Quotas {
    /// From the engine's answer.
    pub fn from_engine(q: &crate::Quotas) -> Self {
        Self {
            max_jobs_per_owner: q.max_jobs_per_owner,
            max_files_per_job: q.max_files_per_job,
            unfinished_jobs: q.unfinished_jobs,
            exempt: q.exempt,
        }
    }
}

/// `GET /v1/limits`: the engine's limits in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Transfers at once across background jobs.
    pub max_transfers: usize,
    /// Transfers at once to one host.
    pub max_transfers_per_host: usize,
    /// Bytes per second over all transfers; `null`: no cap.
    pub max_bytes_per_second: Option<u64>,
    /// The round-robin time slice among equal priorities, in seconds
    /// (rounded up).
    pub time_slice_secs: u64,
    /// Bandwidth windows (`DAYS HH:MM-HH:MM CAP`, local time), the first in
    /// force applying.
    pub bandwidth_schedule: Vec<String>,
    /// What applies at the moment.
    pub in_force: InForce,
}

/// What the bandwidth schedule applies at the moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InForce {
    /// The window in force (index into `bandwidth_schedule`), or `null`.
    pub window: Option<usize>,
    /// The cap in force over all transfers; `null`: none.
    pub max_bytes_per_second: Option<u64>,
    /// Background jobs get no transfer slot (a `pause` window).
    pub background_paused: bool,
    /// When this changes next (RFC 3339); `null`: never.
    pub until: Option<String>,
}

impl Limits {
    /// From the engine's answer.
    pub fn from_engine(l: &crate::Limits, now: &crate::BandwidthNow) -> Self {
        Self {
            bandwidth_schedule: l
                .bandwidth_schedule
                .iter()
                .map(ToString::to_string)
                .collect(),
            in_force: InForce {
                window: now.window,
                max_bytes_per_second: now.max_bytes_per_second,
                background_paused: now.background_paused,
                until: now.until.map(rfc3339),
            },
            max_transfers: l.max_transfers,
            max_transfers_per_host: l.max_transfers_per_host,
            max_bytes_per_second: l.max_bytes_per_second,
            time_slice_secs: l
                .time_slice
                .as_secs()
                .saturating_add(u64::from(l.time_slice.subsec_nanos() > 0)),
        }
    }
}

/// `PATCH /v1/limits` (admins): what to change; `max_bytes_per_second:
/// null` lifts the cap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchLimits {
    /// Transfers at once across background jobs (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_transfers: Option<usize>,
    /// Transfers at once to one host (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_transfers_per_host: Option<usize>,
    /// Bytes per second (at least 1), or `null` for no cap.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub max_bytes_per_second: Option<Option<u64>>,
    /// The time slice in seconds (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_slice_secs: Option<u64>,
    /// A new bandwidth schedule (replaces the old; `[]` removes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_schedule: Option<Vec<String>>,
}
