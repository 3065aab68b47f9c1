//! The persisted form of jobs and files, and its byte encoding.
//!
//! A job is stored as one [`JobRecord`] under [`job_key`] and one
//! [`FileRecord`] per file under [`file_key`] (the job id followed by the file
//! id, big-endian, so a job's files are one key range in add order). The store
//! writes them; only this module knows their bytes.
//!
//! # Encoding
//!
//! ```text
//! "FY" | kind (b'J' job, b'F' file) | schema version (u8) | postcard payload | crc32 (LE)
//! ```
//!
//! The checksum covers every byte before it. Decoding checks magic, kind,
//! version, checksum, and that the payload is consumed exactly; any failure
//! is a [`DecodeError`], never a panic. [`SCHEMA_VERSION`] changes whenever a
//! payload's shape changes; a build reads every earlier version (converting
//! it) and refuses versions it does not know.
//!
//! Versions: 1, the first; 2 added the job's own bandwidth cap
//! (`Properties::max_bytes_per_second`; file records are unchanged).

use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    effect::Answer,
    error::{DecodeError, FileFailure, JobError},
    job::{Fate, FinishKind, Properties},
    time::UtcTime,
    types::{FileId, JobId, JobState, JobType, Validator},
};

/// The version of the record payloads this build writes (it reads this one
/// and every earlier one).
pub const SCHEMA_VERSION: u8 = 2;

const MAGIC: [u8; 2] = *b"FY";
const KIND_JOB: u8 = b'J';
const KIND_FILE: u8 = b'F';
const HEADER_LEN: usize = 4;
const CRC_LEN: usize = 4;

/// The key of a job's record: its id's 16 bytes.
pub fn job_key(job: JobId) -> [u8; 16] {
    job.to_bytes()
}

/// The key of a file's record: the job's 16 bytes, then the file id
/// big-endian (so a job's files sort in add order after [`job_key`]).
pub fn file_key(job: JobId, file: FileId) -> [u8; 20] {
    let mut key = [0; 20];
    let (head, tail) = key.split_at_mut(16);
    head.copy_from_slice(&job.to_bytes());
    tail.copy_from_slice(&file.0.to_be_bytes());
    key
}

/// The job and file a [`file_key`] names.
pub fn parse_file_key(key: &[u8]) -> Result<(JobId, FileId), DecodeError> {
    let bytes: [u8; 20] = key
        .try_into()
        .map_err(|_| DecodeError::Truncated(key.len()))?;
    let (head, tail) = bytes.split_at(16);
    let job: [u8; 16] = head
        .try_into()
        .map_err(|_| DecodeError::Truncated(key.len()))?;
    let file: [u8; 4] = tail
        .try_into()
        .map_err(|_| DecodeError::Truncated(key.len()))?;
    Ok((JobId::from_bytes(job), FileId(u32::from_be_bytes(file))))
}

/// The job a [`job_key`] names.
pub fn parse_job_key(key: &[u8]) -> Result<JobId, DecodeError> {
    let bytes: [u8; 16] = key
        .try_into()
        .map_err(|_| DecodeError::Truncated(key.len()))?;
    Ok(JobId::from_bytes(bytes))
}

/// A Complete or Cancel whose intent is recorded. Which files it keeps and
/// drops is recorded in each file's record (`fate`), so that this record stays
/// small however many files the job has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FinishRecord {
    pub(crate) kind: FinishKind,
    /// Temp files that could not be deleted so far.
    pub(crate) undeleted: Vec<FileFailure>,
    /// A rename failed and the commit waits for the next Complete (true), or
    /// it is to roll forward (false).
    pub(crate) stalled: bool,
}

/// A job's persisted state, everything but its files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub(crate) id: JobId,
    pub(crate) kind: JobType,
    pub(crate) owner: String,
    pub(crate) props: Properties,
    pub(crate) state: JobState,
    pub(crate) error: Option<JobError>,
    pub(crate) error_count: u64,
    pub(crate) created: UtcTime,
    pub(crate) modified: UtcTime,
    pub(crate) transferred_at: Option<UtcTime>,
    /// CONNECTING and TRANSFERRING time used before the current active spell.
    pub(crate) download_time_used: Duration,
    /// While active: when the maximum download time runs out.
    pub(crate) download_deadline: Option<UtcTime>,
    pub(crate) retry_at: Option<UtcTime>,
    pub(crate) no_progress_deadline: Option<UtcTime>,
    pub(crate) inactivity_deadline: Option<UtcTime>,
    pub(crate) retain_until: Option<UtcTime>,
    pub(crate) finish: Option<FinishRecord>,
    pub(crate) answer: Option<Answer>,
    pub(crate) file_count: u32,
    pub(crate) next_attempt: u64,
}

impl JobRecord {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The owner's user name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The state recorded.
    pub fn state(&self) -> JobState {
        self.state
    }

    /// Whether a Complete or Cancel intent is recorded (the commit rolls
    /// forward from here).
    pub fn commit_recorded(&self) -> bool {
        self.finish.is_some()
    }

    /// How many file records belong to the job.
    pub fn file_count(&self) -> u32 {
        self.file_count
    }

    /// This record's key.
    pub fn key(&self) -> [u8; 16] {
        job_key(self.id)
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(KIND_JOB, self)
    }

    /// A record from its bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match open(KIND_JOB, "job", bytes)? {
            (1, payload) => take::<v1::JobRecordV1>(payload).map(Self::from),
            (_, payload) => take(payload),
        }
    }
}

/// One file's persisted state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub(crate) job: JobId,
    pub(crate) file: FileId,
    pub(crate) remote: String,
    pub(crate) local: String,
    pub(crate) temp: String,
    pub(crate) size: Option<u64>,
    /// Bytes written and fsynced: where a resume starts.
    pub(crate) durable: u64,
    /// The furthest `durable` ever reached, for the no-progress rule.
    pub(crate) high_water: u64,
    pub(crate) validator: Option<Validator>,
    /// The server's Last-Modified, for the published file's mtime.
    pub(crate) modified: Option<UtcTime>,
    pub(crate) transferred: bool,
    pub(crate) completed: bool,
    /// A transfer was started at least once, so a temp file may exist.
    pub(crate) touched: bool,
    /// What a recorded Complete or Cancel does with the file.
    pub(crate) fate: Option<Fate>,
}

impl FileRecord {
    /// The job the file belongs to.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// The file's id.
    pub fn file(&self) -> FileId {
        self.file
    }

    /// The file's temp name (for collecting orphan temp files).
    pub fn temp(&self) -> &str {
        &self.temp
    }

    /// The file's final name.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// Bytes durable in the temp file (where a resume starts).
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Whether the temp file holds the whole file (waiting for Complete).
    pub fn transferred(&self) -> bool {
        self.transferred
    }

    /// Whether a temp file may exist (a transfer was started, and the file
    /// was not published).
    pub fn may_have_temp(&self) -> bool {
        self.touched && !self.completed
    }

    /// This record's key.
    pub fn key(&self) -> [u8; 20] {
        file_key(self.job, self.file)
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(KIND_FILE, self)
    }

    /// A record from its bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        // Versions 1 and 2 share the file record's shape.
        let (_, payload) = open(KIND_FILE, "file", bytes)?;
        take(payload)
    }
}

/// Version 1 of the job record: its properties had no bandwidth cap.
mod v1 {
    use std::time::Duration;

    use serde::Deserialize;

    use super::{FinishRecord, JobRecord};
    use crate::{
        command::NotifyCommand,
        effect::Answer,
        error::JobError,
        job::Properties,
        time::UtcTime,
        types::{JobId, JobState, JobType, Priority},
    };

    #[derive(Deserialize)]
    pub(super) struct PropertiesV1 {
        name: String,
        description: String,
        priority: Priority,
        min_retry_delay: Duration,
        no_progress_timeout: Duration,
        max_download_time: Duration,
        notify: Option<NotifyCommand>,
        parallel_files: u32,
    }

    #[derive(Deserialize)]
    pub(super) struct JobRecordV1 {
        id: JobId,
        kind: JobType,
        owner: String,
        props: PropertiesV1,
        state: JobState,
        error: Option<JobError>,
        error_count: u64,
        created: UtcTime,
        modified: UtcTime,
        transferred_at: Option<UtcTime>,
        download_time_used: Duration,
        download_deadline: Option<UtcTime>,
        retry_at: Option<UtcTime>,
        no_progress_deadline: Option<UtcTime>,
        inactivity_deadline: Option<UtcTime>,
        retain_until: Option<UtcTime>,
        finish: Option<FinishRecord>,
        answer: Option<Answer>,
        file_count: u32,
        next_attempt: u64,
    }

    impl From<JobRecordV1> for JobRecord {
        fn from(r: JobRecordV1) -> Self {
            let p = r.props;
            Self {
                id: r.id,
                kind: r.kind,
                owner: r.owner,
                props: Properties {
                    name: p.name,
                    description: p.description,
                    priority: p.priority,
                    min_retry_delay: p.min_retry_delay,
                    no_progress_timeout: p.no_progress_timeout,
                    max_download_time: p.max_download_time,
                    notify: p.notify,
                    parallel_files: p.parallel_files,
                    max_bytes_per_second: None,
                },
                state: r.state,
                error: r.error,
                error_count: r.error_count,
                created: r.created,
                modified: r.modified,
                transferred_at: r.transferred_at,
                download_time_used: r.download_time_used,
                download_deadline: r.download_deadline,
                retry_at: r.retry_at,
                no_progress_deadline: r.no_progress_deadline,
                inactivity_deadline: r.inactivity_deadline,
                retain_until: r.retain_until,
                finish: r.finish,
                answer: r.answer,
                file_count: r.file_count,
                next_attempt: r.next_attempt,
            }
        }
    }
}

fn encode<T: Serialize>(kind: u8, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    out.push(kind);
    out.push(SCHEMA_VERSION);
    // Invariant: postcard fails only on serde features the records do not use
    // (sequences of unknown length) or on a full fixed-size buffer; a `Vec`
    // grows. The record types are plain structs, enums, strings and vectors.
    #[allow(clippy::expect_used)]
    let mut out = postcard::to_extend(value, out).expect("records always serialize");
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a record's frame (magic, kind, a known version, checksum) and
/// returns its version and payload.
fn open<'a>(
    kind: u8,
    expected: &'static str,
    bytes: &'a [u8],
) -> Result<(u8, &'a [u8]), DecodeError> {
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let (header, payload) = body.split_at(HEADER_LEN);
    if header.get(..2) != Some(&MAGIC[..]) {
        return Err(DecodeError::BadMagic);
    }
    let found_kind = header.get(2).copied().unwrap_or_default();
    if found_kind != kind {
        return Err(DecodeError::WrongKind {
            expected,
            found: found_kind,
        });
    }
    let version = header.get(3).copied().unwrap_or_default();
    if version == 0 || version > SCHEMA_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let stored = u32::from_le_bytes(crc.try_into().map_err(|_| DecodeError::Checksum)?);
    if crc32fast::hash(body) != stored {
        return Err(DecodeError::Checksum);
    }
    Ok((version, payload))
}

/// A payload that must be consumed exactly.
fn take<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|err| DecodeError::Malformed(err.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::time::Duration;

    use super::*;
    use crate::{
        Command, CoreConfig, FileEvent, FileSpec, Job, JobSpec, MonoTime, Now, Principal,
        TransferEvent,
    };

    fn now() -> Now {
        Now::new(
            MonoTime::from_elapsed(Duration::ZERO),
            UtcTime::from_unix_millis(5),
        )
    }

    /// A job with files in several conditions, so records hold real values.
    fn job() -> Job {
        let id = JobId(uuid::Uuid::from_u128(42));
        let alice = Principal::user("alice");
        let mut job = Job::create(
            id,
            &alice,
            JobSpec::download("n"),
            CoreConfig::default(),
            now(),
        )
        .unwrap();
        let files = vec![
            FileSpec::new("http://h/a", "/d/a"),
            FileSpec::new("https://h/b?x=1", "/d/é b"),
        ];
        job.handle_command(&alice, Command::AddFiles(files), now())
            .unwrap();
        job.handle_command(&alice, Command::Resume, now()).unwrap();
        job.handle_grant(now()).unwrap();
        let event = TransferEvent::Responded {
            ranges: true,
            offset: 0,
            size: Some(100),
            validator: Some(Validator::ETag("\"v\"".into())),
            modified: None,
        };
        job.handle_file_event(FileId(0), FileEvent::Transfer { attempt: 1, event }, now())
            .unwrap();
        let event = TransferEvent::Checkpointed { offset: 64 };
        job.handle_file_event(FileId(0), FileEvent::Transfer { attempt: 1, event }, now())
            .unwrap();
        job
    }

    #[test]
    fn records_round_trip() {
        let job = job();
        let record = job.record();
        assert_eq!(JobRecord::decode(&record.encode()).unwrap(), record);
        for file in job.file_records() {
            assert_eq!(FileRecord::decode(&file.encode()).unwrap(), file);
        }
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn records_of_schema_version_1_are_read() {
        // Written by the build before version 2 (commit 23ad180): the job of
        // `job()` with 3 parallel files, and its second file.
        let job_v1 = unhex(
            "46594a01100000000000000000000000000000002a0005616c696365016e0002d8040080\
             ea490080ceda030000030200000a0a000000018ae0e2f7390000018ae0e2f7390000000202a22a6253",
        );
        let file_v1 = unhex(
            "46594601100000000000000000000000000000002a010f68747470733a2f2f682f623f78\
             3d31072f642fc3a92062422f642f2e66657272792d303030303030303030303030303030\
             302d30303030303030303030303030303030303030303030303030303030303032612d31\
             2e706172740000000000000000001e911215",
        );
        let mut want = job();
        want.handle_command(
            &Principal::user("alice"),
            Command::Set(crate::Property::ParallelFiles(3)),
            now(),
        )
        .unwrap();
        let record = JobRecord::decode(&job_v1).unwrap();
        assert_eq!(record.props.max_bytes_per_second, None);
        let mut expected = want.record();
        // Version 1 wrote the job TRANSFERRING (moves among the active
        // states were synced then); the state is not what is tested here.
        expected.state = record.state;
        assert_eq!(record, expected);
        assert_eq!(
            FileRecord::decode(&file_v1).unwrap(),
            want.file_records()[1]
        );
        // Written again, it is version 2 and reads back the same.
        let again = record.encode();
        assert_eq!(again[3], SCHEMA_VERSION);
        assert_eq!(JobRecord::decode(&again).unwrap(), record);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = job().record().encode();
        for len in 0..bytes.len() {
            assert!(JobRecord::decode(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn every_bit_flip_is_an_error() {
        let bytes = job().file_records()[0].encode();
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(FileRecord::decode(&damaged).is_err(), "bit {i}");
        }
    }

    #[test]
    fn kinds_versions_and_trailing_bytes_are_checked() {
        let job = job();
        let job_bytes = job.record().encode();
        assert_eq!(
            FileRecord::decode(&job_bytes),
            Err(DecodeError::WrongKind {
                expected: "file",
                found: KIND_JOB
            })
        );
        // A well-formed record of a future schema version.
        let mut future = job_bytes.clone();
        future.truncate(future.len() - CRC_LEN);
        future[3] = SCHEMA_VERSION + 1;
        let crc = crc32fast::hash(&future);
        future.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            JobRecord::decode(&future),
            Err(DecodeError::UnknownVersion(SCHEMA_VERSION + 1))
        );
        // Extra bytes inside a valid checksum.
        let mut padded = job_bytes.clone();
        padded.truncate(padded.len() - CRC_LEN);
        padded.push(0);
        let crc = crc32fast::hash(&padded);
        padded.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            JobRecord::decode(&padded),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            JobRecord::decode(b"XY\x4a\x01\0\0\0\0"),
            Err(DecodeError::BadMagic)
        );
    }

    #[test]
    fn keys_round_trip_and_sort_files_in_order() {
        let id = JobId(uuid::Uuid::from_u128(9));
        assert_eq!(parse_job_key(&job_key(id)), Ok(id));
        assert_eq!(
            parse_file_key(&file_key(id, FileId(300))),
            Ok((id, FileId(300)))
        );
        assert!(file_key(id, FileId(2)) < file_key(id, FileId(256)));
        assert!(file_key(id, FileId(0)).starts_with(&job_key(id)));
        assert!(parse_file_key(&[1, 2, 3]).is_err());
        assert!(parse_job_key(&[0; 17]).is_err());
    }

    #[test]
    fn restore_rejects_records_that_do_not_fit_together() {
        let job = job();
        let mut files = job.file_records();
        files.pop();
        let err = Job::restore(job.record(), files, CoreConfig::default(), now()).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)));
        let mut files = job.file_records();
        files[1].file = FileId(5);
        assert!(Job::restore(job.record(), files, CoreConfig::default(), now()).is_err());
    }
}
