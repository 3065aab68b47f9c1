//! Codec and parser properties: persisted records round-trip and reject
//! damaged bytes with an error, never a panic; the HTTP header parsers never
//! panic on arbitrary input and agree with RFC 9110's rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use ferry_core::{
    Command, CoreConfig, FileEvent, FileId, FileRecord, FileSpec, Job, JobId, JobRecord, JobSpec,
    MonoTime, Now, Principal, Property, TransferError, TransferEvent, UtcTime, Validator,
    http::{self, ContentRange},
};
use proptest::prelude::*;

fn now(secs: u64) -> Now {
    Now::new(
        MonoTime::from_elapsed(Duration::from_secs(secs)),
        UtcTime::from_unix_millis(1_767_225_600_000 + secs as i64 * 1000),
    )
}

/// One input to a job, for building jobs in many different states.
#[derive(Clone, Debug)]
enum Op {
    Add(u8),
    Resume,
    Suspend,
    Grant,
    Respond { file: u8, size: u32, etag: bool },
    Checkpoint { file: u8, offset: u32 },
    Transferred { file: u8, size: u32 },
    Fail { file: u8, fatal: bool },
    Advance(u32),
    Describe(String),
    Complete,
    Cancel,
    Published(u8, bool),
    Deleted(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::Add),
        Just(Op::Resume),
        Just(Op::Suspend),
        Just(Op::Grant),
        (0u8..6, any::<u32>(), any::<bool>()).prop_map(|(file, size, etag)| Op::Respond {
            file,
            size,
            etag
        }),
        (0u8..6, any::<u32>()).prop_map(|(file, offset)| Op::Checkpoint { file, offset }),
        (0u8..6, any::<u32>()).prop_map(|(file, size)| Op::Transferred { file, size }),
        (0u8..6, any::<bool>()).prop_map(|(file, fatal)| Op::Fail { file, fatal }),
        (0u32..100_000).prop_map(Op::Advance),
        ".{0,40}".prop_map(Op::Describe),
        Just(Op::Complete),
        Just(Op::Cancel),
        (0u8..6, any::<bool>()).prop_map(|(f, ok)| Op::Published(f, ok)),
        (0u8..6, any::<bool>()).prop_map(|(f, ok)| Op::Deleted(f, ok)),
    ]
}

/// A job after `ops` (refused inputs are part of the test: they change
/// nothing), with the latest attempt of each file.
fn build(ops: &[Op]) -> Job {
    let alice = Principal::user("alice");
    let id = JobId(uuid::Uuid::from_u128(0xfe));
    let mut clock = 0u64;
    let mut job = Job::create(
        id,
        &alice,
        JobSpec::download("p"),
        CoreConfig::default(),
        now(0),
    )
    .unwrap();
    let mut attempts = [0u64; 6];
    for op in ops {
        let t = now(clock);
        let transfer = |job: &mut Job, file: u8, attempt: u64, event| {
            let _ = job.handle_file_event(
                FileId(u32::from(file)),
                FileEvent::Transfer { attempt, event },
                t,
            );
        };
        match op.clone() {
            Op::Add(n) => {
                let spec = FileSpec::new(format!("http://h/{n}"), format!("/d/{n}"));
                let _ = job.handle_command(&alice, Command::AddFiles(vec![spec]), t);
            }
            Op::Resume => drop(job.handle_command(&alice, Command::Resume, t)),
            Op::Suspend => drop(job.handle_command(&alice, Command::Suspend, t)),
            Op::Complete => drop(job.handle_command(&alice, Command::Complete, t)),
            Op::Cancel => drop(job.handle_command(&alice, Command::Cancel, t)),
            Op::Describe(text) => {
                let _ = job.handle_command(&alice, Command::Set(Property::Description(text)), t);
            }
            Op::Grant => {
                job.handle_grant(t);
            }
            Op::Respond { file, size, etag } => {
                let event = TransferEvent::Responded {
                    ranges: true,
                    offset: 0,
                    size: Some(u64::from(size)),
                    validator: etag.then(|| Validator::ETag(format!("\"{size}\""))),
                    modified: None,
                };
                transfer(&mut job, file, attempts[file as usize], event);
            }
            Op::Checkpoint { file, offset } => {
                let event = TransferEvent::Checkpointed {
                    offset: u64::from(offset),
                };
                transfer(&mut job, file, attempts[file as usize], event);
            }
            Op::Transferred { file, size } => {
                let event = TransferEvent::Transferred {
                    size: u64::from(size),
                };
                transfer(&mut job, file, attempts[file as usize], event);
            }
            Op::Fail { file, fatal } => {
                let ctx = ferry_core::ErrorContext::RemoteFile;
                let error = if fatal {
                    TransferError::fatal(ctx, "http_404", "x")
                } else {
                    TransferError::transient(ctx, "http_503", "x")
                };
                transfer(
                    &mut job,
                    file,
                    attempts[file as usize],
                    TransferEvent::Failed(error),
                );
            }
            Op::Advance(secs) => {
                clock += u64::from(secs);
                job.handle_timeout(now(clock));
            }
            Op::Published(f, ok) => {
                let result = if ok { Ok(()) } else { Err("denied".into()) };
                let _ =
                    job.handle_file_event(FileId(u32::from(f)), FileEvent::Published(result), t);
            }
            Op::Deleted(f, ok) => {
                let result = if ok { Ok(()) } else { Err("busy".into()) };
                let _ =
                    job.handle_file_event(FileId(u32::from(f)), FileEvent::TempDeleted(result), t);
            }
        }
        while let Some(effect) = job.poll_effect() {
            if let ferry_core::Effect::StartTransfer(order) = effect {
                attempts[order.file.0 as usize] = order.attempt;
            }
        }
    }
    job
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_time: 60_000, ..ProptestConfig::default() })]

    #[test]
    fn records_of_any_job_round_trip(ops in prop::collection::vec(op(), 0..40)) {
        let job = build(&ops);
        let record = job.record();
        prop_assert_eq!(JobRecord::decode(&record.encode()).unwrap(), record.clone());
        let files = job.file_records();
        for file in &files {
            prop_assert_eq!(&FileRecord::decode(&file.encode()).unwrap(), file);
        }
        // And the job they rebuild persists the same records again.
        let restored = Job::restore(record.clone(), files.clone(), CoreConfig::default(), now(0)).unwrap();
        prop_assert_eq!(restored.file_records(), files);
        prop_assert_eq!(restored.view().files_total, job.view().files_total);
    }

    #[test]
    fn damaged_records_are_errors(ops in prop::collection::vec(op(), 0..20), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let job = build(&ops);
        let bytes = job.record().encode();
        let i = at.index(bytes.len());
        let mut damaged = bytes.clone();
        damaged[i] ^= flip;
        prop_assert!(JobRecord::decode(&damaged).is_err());
        prop_assert!(JobRecord::decode(&bytes[..i]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = JobRecord::decode(&bytes);
        let _ = FileRecord::decode(&bytes);
        let _ = ferry_core::record::parse_file_key(&bytes);
        let _ = ferry_core::record::parse_job_key(&bytes);
    }

    #[test]
    fn content_range_parsing_is_total_and_consistent(value in ".{0,60}") {
        if let Some(ContentRange::Bytes { first, last, complete }) = http::parse_content_range(&value) {
            prop_assert!(first <= last);
            prop_assert!(complete.is_none_or(|c| c > last));
        }
    }

    #[test]
    fn content_range_reads_back_what_is_written(first in any::<u64>(), len in any::<u64>(), extra in 1u64..1000, star in any::<bool>()) {
        let last = first.saturating_add(len);
        let complete = last.checked_add(extra);
        let written = match (star, complete) {
            (false, Some(c)) => format!("bytes {first}-{last}/{c}"),
            _ => format!("bytes {first}-{last}/*"),
        };
        let expected = ContentRange::Bytes { first, last, complete: if star { None } else { complete } };
        prop_assert_eq!(http::parse_content_range(&written), Some(expected));
    }

    #[test]
    fn header_helpers_never_panic(value in ".{0,80}", offset in any::<u64>(), size in any::<Option<u64>>(), again in any::<bool>()) {
        let _ = http::parse_retry_after(&value, UtcTime::from_unix_millis(0));
        let _ = http::parse_http_date(&value);
        let _ = http::validator(Some(&value), Some(&value));
        let _ = http::unsatisfiable(offset, size, Some(&value), again);
    }

    #[test]
    fn retry_after_seconds_read_as_seconds(secs in any::<u32>()) {
        prop_assert_eq!(
            http::parse_retry_after(&secs.to_string(), UtcTime::from_unix_millis(0)),
            Some(Duration::from_secs(u64::from(secs)))
        );
    }
}
