//! Every command in every state, as one table: the row is the state the job
//! is in, the column the command, the cell what happened (`-> state` when it
//! was accepted, the error code when it was refused). Complete and Cancel are
//! followed through: their filesystem steps are reported as done.

use std::{fmt::Write as _, time::Duration};

use expect_test::expect;
use ferry_core::{
    Command, CoreConfig, Effect, FileEvent, FileId, FileSpec, Job, JobId, JobSpec, JobState,
    JobType, MonoTime, Now, Principal, Priority, Property, TransferError, TransferEvent, UtcTime,
};

fn now() -> Now {
    Now::new(
        MonoTime::from_elapsed(Duration::from_secs(1)),
        UtcTime::from_unix_millis(1_767_225_600_000),
    )
}

fn alice() -> Principal {
    Principal::user("alice")
}

/// Carries out every effect with success, as a perfect shell would.
fn settle(job: &mut Job) {
    while let Some(effect) = job.poll_effect() {
        let event = match effect {
            Effect::Publish { file, .. } => Some((file, FileEvent::Published(Ok(())))),
            Effect::DeleteTemp { file, .. } => Some((file, FileEvent::TempDeleted(Ok(())))),
            _ => None,
        };
        if let Some((file, event)) = event {
            job.handle_file_event(file, event, now()).unwrap();
        }
    }
}

fn transfer(job: &mut Job, attempt: u64, event: TransferEvent) {
    let event = FileEvent::Transfer { attempt, event };
    job.handle_file_event(FileId(0), event, now()).unwrap();
    settle(job);
}

/// A job of `kind` with one file, driven into `state`.
fn job_in(state: JobState, kind: JobType) -> Job {
    let spec = JobSpec {
        kind,
        ..JobSpec::download("table")
    };
    let id = JobId(uuid::Uuid::from_u128(7));
    let mut job = Job::create(id, &alice(), spec, CoreConfig::default(), now()).unwrap();
    let file = FileSpec::new("http://h/a", "/d/a");
    job.handle_command(&alice(), Command::AddFiles(vec![file]), now())
        .unwrap();
    settle(&mut job);
    let go = |job: &mut Job, command| {
        job.handle_command(&alice(), command, now()).unwrap();
        settle(job);
    };
    if state == JobState::Suspended {
        return job;
    }
    if state == JobState::Cancelled {
        go(&mut job, Command::Cancel);
        return job;
    }
    go(&mut job, Command::Resume);
    if state == JobState::Queued {
        return job;
    }
    job.handle_grant(now()).unwrap();
    settle(&mut job);
    match state {
        JobState::Connecting => {}
        JobState::Transferring => transfer(
            &mut job,
            1,
            TransferEvent::Responded {
                ranges: true,
                offset: 0,
                size: Some(10),
                validator: None,
                modified: None,
            },
        ),
        JobState::TransientError | JobState::Error => {
            let error = if state == JobState::Error {
                TransferError::fatal(ferry_core::ErrorContext::RemoteFile, "http_404", "gone")
            } else {
                TransferError::transient(ferry_core::ErrorContext::Transport, "reset", "reset")
            };
            transfer(&mut job, 1, TransferEvent::Failed(error));
        }
        JobState::Transferred | JobState::Acknowledged => {
            transfer(&mut job, 1, TransferEvent::Transferred { size: 10 });
            if state == JobState::Acknowledged {
                go(&mut job, Command::Complete);
            }
        }
        _ => unreachable!(),
    }
    assert_eq!(job.state(), state);
    job
}

type Column = (&'static str, fn() -> Command);

fn table(kind: JobType) -> String {
    let commands: Vec<Column> = vec![
        ("add", || {
            Command::AddFiles(vec![FileSpec::new("http://h/b", "/d/b")])
        }),
        ("resume", || Command::Resume),
        ("suspend", || Command::Suspend),
        ("priority", || {
            Command::Set(Property::Priority(Priority::High))
        }),
        ("complete", || Command::Complete),
        ("cancel", || Command::Cancel),
    ];
    let states = [
        JobState::Suspended,
        JobState::Queued,
        JobState::Connecting,
        JobState::Transferring,
        JobState::TransientError,
        JobState::Error,
        JobState::Transferred,
        JobState::Acknowledged,
        JobState::Cancelled,
    ];
    let mut out = format!("{:<16}", "");
    for (name, _) in &commands {
        write!(out, "{name:<24}").unwrap();
    }
    out = out.trim_end().to_owned();
    out.push('\n');
    for state in states {
        write!(out, "{:<16}", state.as_str()).unwrap();
        for (_, command) in &commands {
            let mut job = job_in(state, kind);
            let cell = match job.handle_command(&alice(), command(), now()) {
                Ok(_) => {
                    settle(&mut job);
                    format!("-> {}", job.state())
                }
                Err(err) => err.code().to_owned(),
            };
            write!(out, "{cell:<24}").unwrap();
        }
        out = out.trim_end().to_owned();
        out.push('\n');
    }
    out
}

#[test]
fn every_command_in_every_state_of_a_download_job() {
    expect![[r#"
                        add                     resume                  suspend                 priority                complete                cancel
        suspended       -> suspended            -> queued               -> suspended            -> suspended            -> acknowledged         -> cancelled
        queued          -> queued               -> queued               -> suspended            -> queued               -> acknowledged         -> cancelled
        connecting      -> connecting           -> connecting           -> suspended            -> connecting           -> acknowledged         -> cancelled
        transferring    -> transferring         -> transferring         -> suspended            -> transferring         -> acknowledged         -> cancelled
        transient_error -> transient_error      -> queued               -> suspended            -> transient_error      -> acknowledged         -> cancelled
        error           -> error                -> queued               -> suspended            -> error                -> acknowledged         -> cancelled
        transferred     -> transferred          -> transferred          -> suspended            -> transferred          -> acknowledged         -> cancelled
        acknowledged    invalid_state           invalid_state           invalid_state           invalid_state           invalid_state           invalid_state
        cancelled       invalid_state           invalid_state           invalid_state           invalid_state           invalid_state           invalid_state
    "#]]
    .assert_eq(&table(JobType::Download));
}

#[test]
fn every_command_in_every_state_of_an_upload_job() {
    expect![[r#"
                        add                     resume                  suspend                 priority                complete                cancel
        suspended       too_many_files          -> queued               -> suspended            -> suspended            invalid_state           -> cancelled
        queued          too_many_files          -> queued               -> suspended            -> queued               invalid_state           -> cancelled
        connecting      too_many_files          -> connecting           -> suspended            -> connecting           invalid_state           -> cancelled
        transferring    too_many_files          -> transferring         -> suspended            -> transferring         invalid_state           -> cancelled
        transient_error too_many_files          -> queued               -> suspended            -> transient_error      invalid_state           -> cancelled
        error           too_many_files          -> queued               -> suspended            -> error                invalid_state           -> cancelled
        transferred     too_many_files          -> transferred          -> suspended            -> transferred          -> acknowledged         -> cancelled
        acknowledged    invalid_state           invalid_state           invalid_state           invalid_state           invalid_state           invalid_state
        cancelled       invalid_state           invalid_state           invalid_state           invalid_state           invalid_state           invalid_state
    "#]]
    .assert_eq(&table(JobType::Upload));
}
