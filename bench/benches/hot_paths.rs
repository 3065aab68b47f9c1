//! Criterion micro-benchmarks of the hot paths:
//! - the core's event handling (a file's progress and checkpoints through a
//!   job, effects drained as the shell would);
//! - durable job creation through the store's group commit (many callers at
//!   once: one fsync for the batch);
//! - content generation and verification of the origin (the harness's own
//!   cost, so that it is known and kept small);
//! - chunk coalescing: a body arriving in 16 KiB chunks written to a temp
//!   file in 1 MiB writes (the file actor's `Coalescer`), against one write
//!   per chunk.
//!
//! `cargo bench -p ferry-bench --bench hot_paths` (release profile).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry_core::{
    Command, CoreConfig, Effect, FileEvent, FileId, FileSpec, Job, JobId, JobSpec, MonoTime, Now,
    Principal, TransferEvent, UtcTime,
};

fn now(millis: u64) -> Now {
    Now::new(
        MonoTime::from_elapsed(Duration::from_millis(millis)),
        UtcTime::from_unix_millis(1_767_225_600_000 + i64::try_from(millis).unwrap()),
    )
}

/// A job with `files` files, resumed and with file 0 running.
fn running_job(files: usize) -> (Job, u64) {
    let me = Principal::user("bench");
    let mut job = Job::create(
        JobId(uuid::Uuid::from_u128(1)),
        &me,
        JobSpec::download("bench"),
        CoreConfig::default(),
        now(0),
    )
    .unwrap();
    let specs = (0..files)
        .map(|i| FileSpec::new(format!("http://h/{i}"), format!("/tmp/{i}")))
        .collect();
    job.handle_command(&me, Command::AddFiles(specs), now(0))
        .unwrap();
    job.handle_command(&me, Command::Resume, now(0)).unwrap();
    job.handle_grant(now(0));
    let mut attempt = 0;
    while let Some(effect) = job.poll_effect() {
        if let Effect::StartTransfer(order) = effect {
            attempt = order.attempt;
        }
    }
    (job, attempt)
}

fn core_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    group.bench_function("received+checkpointed", |b| {
        let (mut job, attempt) = running_job(16);
        let file = FileId(0);
        let _ = job.handle_file_event(
            file,
            FileEvent::Transfer {
                attempt,
                event: TransferEvent::Responded {
                    ranges: true,
                    offset: 0,
                    size: Some(u64::MAX / 2),
                    validator: None,
                    modified: None,
                },
            },
            now(1),
        );
        while job.poll_effect().is_some() {}
        let mut offset = 0u64;
        let mut t = 1;
        b.iter(|| {
            offset += 1 << 20;
            t += 1;
            for event in [
                TransferEvent::Received { offset },
                TransferEvent::Checkpointed { offset },
            ] {
                let _ = job.handle_file_event(file, FileEvent::Transfer { attempt, event }, now(t));
            }
            while let Some(effect) = job.poll_effect() {
                std::hint::black_box(effect);
            }
        });
    });
    group.finish();
}

fn store_group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    for callers in [1usize, 64] {
        group.throughput(Throughput::Elements(256));
        group.bench_with_input(
            BenchmarkId::new("durable_create_256_jobs", callers),
            &callers,
            |b, &callers| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::TempDir::new().unwrap();
                        total += actix_rt::System::new().block_on(async {
                            let engine = ferry_actors::Engine::start(
                                ferry_actors::EngineConfig::new(dir.path()),
                            )
                            .await
                            .unwrap();
                            let me = Principal::user("bench");
                            let start = Instant::now();
                            let mut left = 256;
                            while left > 0 {
                                let n = left.min(callers);
                                let batch =
                                    (0..n).map(|_| engine.create_job(&me, JobSpec::download("b")));
                                for r in futures_util::future::join_all(batch).await {
                                    r.unwrap();
                                }
                                left -= n;
                            }
                            let elapsed = start.elapsed();
                            engine.shutdown().await.unwrap();
                            elapsed
                        });
                    }
                    total
                });
            },
        );
    }
    group.finish();
}

fn origin_content(c: &mut Criterion) {
    let mut group = c.benchmark_group("origin");
    let len = 1u64 << 20;
    group.throughput(Throughput::Bytes(len));
    group.bench_function("generate_1MiB", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            ferry_bench::origin::fill(7, 3, len, &mut out);
            std::hint::black_box(&out);
        });
    });
    group.finish();
}

fn chunk_coalescing(c: &mut Criterion) {
    use std::os::unix::fs::FileExt as _;
    const BODY: usize = 64 << 20;
    const CHUNK: usize = 16 << 10;
    let mut group = c.benchmark_group("chunks");
    group.throughput(Throughput::Bytes(BODY as u64));
    group.sample_size(20);
    let chunks: Vec<bytes::Bytes> = (0..BODY / CHUNK)
        .map(|i| bytes::Bytes::from(vec![u8::try_from(i % 251).unwrap(); CHUNK]))
        .collect();
    let dir = tempfile::TempDir::new().unwrap();
    let file = std::fs::File::create(dir.path().join("temp")).unwrap();
    group.bench_function("64MiB_in_16KiB_chunks/coalesced_1MiB_writes", |b| {
        b.iter(|| {
            let mut coalescer =
                ferry_actors::chunks::Coalescer::new(ferry_actors::chunks::WRITE_SIZE);
            let mut offset = 0u64;
            for chunk in &chunks {
                if let Some(data) = coalescer.push(chunk.clone()) {
                    data.write_all_at(&file, offset).unwrap();
                    offset += data.len() as u64;
                }
            }
            let rest = coalescer.take();
            rest.write_all_at(&file, offset).unwrap();
        });
    });
    group.bench_function("64MiB_in_16KiB_chunks/one_write_per_chunk", |b| {
        b.iter(|| {
            let mut offset = 0u64;
            for chunk in &chunks {
                file.write_all_at(chunk, offset).unwrap();
                offset += chunk.len() as u64;
            }
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    core_events,
    store_group_commit,
    origin_content,
    chunk_coalescing
);
criterion_main!(benches);
