//! Bad input gets a typed error and changes nothing.

use ferry_actors::EngineError;
use ferry_core::{CommandError, FileSpec, JobId, JobSpec, Principal};

use crate::util::{Harness, alice};

fn code(result: Result<Vec<ferry_core::FileId>, EngineError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(err) => err.code(),
    }
}

#[actix_rt::test]
async fn bad_files_are_refused_and_change_nothing() {
    let h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    let dir = h.downloads.path().to_string_lossy().into_owned();
    std::fs::create_dir(h.local("sub")).unwrap();
    std::os::unix::fs::symlink(h.local("sub"), h.local("link-to-sub")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", h.local("link-to-file")).unwrap();
    let url = h.origin.url("/a");
    let cases: Vec<(&str, FileSpec)> = vec![
        ("invalid_local_name", FileSpec::new(&url, "relative/x")),
        (
            "invalid_local_name",
            FileSpec::new(&url, format!("{dir}/../x")),
        ),
        (
            "invalid_local_name",
            FileSpec::new(&url, format!("{dir}/sub")),
        ),
        (
            "invalid_local_name",
            FileSpec::new(&url, format!("{dir}/nowhere/x")),
        ),
        // Publishing never replaces or follows a link: refused at once.
        (
            "invalid_local_name",
            FileSpec::new(&url, format!("{dir}/link-to-sub")),
        ),
        (
            "invalid_local_name",
            FileSpec::new(&url, format!("{dir}/link-to-file")),
        ),
        (
            "duplicate_local_name",
            FileSpec::new(&url, format!("{dir}/a")),
        ),
        (
            "invalid_remote_name",
            FileSpec::new("ftp://h/x", format!("{dir}/x")),
        ),
        (
            "invalid_remote_name",
            FileSpec::new("not a url", format!("{dir}/x")),
        ),
        (
            "string_too_long",
            FileSpec::new(format!("http://h/{}", "x".repeat(2200)), format!("{dir}/x")),
        ),
    ];
    for (want, spec) in cases {
        let got = code(h.engine.add_files(&alice(), job, vec![spec.clone()]).await);
        assert_eq!(got, want, "{spec:?}");
    }
    // The same local path twice in one call.
    let twice = vec![
        FileSpec::new(&url, format!("{dir}/y")),
        FileSpec::new(&url, format!("{dir}/y")),
    ];
    assert_eq!(
        code(h.engine.add_files(&alice(), job, twice).await),
        "duplicate_local_name"
    );
    // A bad name after good ones: in the directory already checked for
    // them, and in another one.
    for bad in [format!("{dir}/sub"), format!("{dir}/nowhere/x")] {
        let files = vec![
            FileSpec::new(&url, format!("{dir}/y")),
            FileSpec::new(&url, format!("{dir}/z")),
            FileSpec::new(&url, bad.clone()),
        ];
        let got = code(h.engine.add_files(&alice(), job, files).await);
        assert_eq!(got, "invalid_local_name", "{bad}");
    }
    assert_eq!(h.engine.files(&alice(), job).await.unwrap().len(), 1);
}

#[actix_rt::test]
async fn unknown_jobs_and_other_users_jobs_are_not_found() {
    let h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    let bob = Principal::user("bob");
    let unknown = JobId(uuid::Uuid::from_u128(1));
    for (who, id) in [(&alice(), unknown), (&bob, job)] {
        assert!(matches!(
            h.engine.resume(who, id).await,
            Err(EngineError::Command(CommandError::NotFound))
        ));
        assert!(matches!(
            h.engine.job(who, id).await,
            Err(EngineError::Command(CommandError::NotFound))
        ));
    }
    assert_eq!(
        code(
            h.engine
                .add_files(&bob, job, vec![FileSpec::new("http://h/x", "/tmp/x")])
                .await
        ),
        "not_found"
    );
    assert!(h.engine.list(&bob, false).await.unwrap().is_empty());
    assert!(matches!(
        h.engine.list(&bob, true).await,
        Err(EngineError::Command(CommandError::AccessDenied))
    ));
    let root = Principal::admin("root");
    assert_eq!(h.engine.list(&root, true).await.unwrap().len(), 1);
    assert!(h.engine.resume(&root, job).await.is_ok());
}

#[actix_rt::test]
async fn over_long_names_are_refused() {
    let h = Harness::new().await;
    let err = h
        .engine
        .create_job(&alice(), JobSpec::download("n".repeat(257)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "string_too_long");
    assert!(h.engine.list(&alice(), false).await.unwrap().is_empty());
}

/// Quotas as BITS has them, for a non-admin principal: a third unfinished
/// job is refused with too_many_jobs and leaves nothing behind (not even
/// across a restart); finished jobs do not count; admins are exempt; files
/// per job are capped the same way.
#[actix_rt::test]
async fn quotas_limit_a_non_admin_and_a_refused_job_leaves_nothing() {
    let quota = |c: &mut ferry_actors::EngineConfig| {
        c.max_jobs_per_owner = 2;
        c.core.max_files_per_job = 3;
    };
    let mut h = Harness::with(quota).await;
    let root = Principal::admin("root");
    let me = alice();
    let first = h
        .engine
        .create_job(&me, JobSpec::download("1"))
        .await
        .unwrap();
    h.engine
        .create_job(&me, JobSpec::download("2"))
        .await
        .unwrap();
    let refused = h.engine.create_job(&me, JobSpec::download("3")).await;
    assert!(
        matches!(
            refused,
            Err(EngineError::Command(CommandError::JobQuota { limit: 2 }))
        ),
        "{refused:?}"
    );
    let usage = h.engine.quotas(&me).await.unwrap();
    assert_eq!(
        (
            usage.unfinished_jobs,
            usage.max_jobs_per_owner,
            usage.max_files_per_job,
            usage.exempt
        ),
        (2, 2, 3, false)
    );
    // Other owners have their own count; admins have none.
    h.engine
        .create_job(&Principal::user("bob"), JobSpec::download("b"))
        .await
        .unwrap();
    for i in 0..3 {
        h.engine
            .create_job(&root, JobSpec::download(format!("r{i}")))
            .await
            .unwrap();
    }
    assert!(h.engine.quotas(&root).await.unwrap().exempt);

    // Files: at most 3 in a job of alice's, in one add or several.
    let url = h.origin.url("/f");
    h.origin.add("/f", 10);
    let spec = |n: u32| FileSpec::new(&url, h.local(&format!("f{n}")).to_string_lossy());
    let four = (0..4).map(spec).collect();
    assert_eq!(
        code(h.engine.add_files(&me, first, four).await),
        "too_many_files_in_job"
    );
    assert_eq!(
        code(h.engine.add_files(&me, first, vec![spec(0), spec(1)]).await),
        "ok"
    );
    assert_eq!(
        code(h.engine.add_files(&me, first, vec![spec(2), spec(3)]).await),
        "too_many_files_in_job"
    );
    assert_eq!(
        code(h.engine.add_files(&me, first, vec![spec(2)]).await),
        "ok"
    );
    assert_eq!(
        code(h.engine.add_files(&root, first, vec![spec(3)]).await),
        "ok"
    );

    // A restart counts the restored jobs: still at the limit, and the
    // refused job was never written.
    h.engine.clone().shutdown().await.unwrap();
    let mut config = crate::util::config(h.data.path());
    quota(&mut config);
    h.engine = ferry_actors::Engine::start(config.clone()).await.unwrap();
    let mine = h.engine.list(&me, false).await.unwrap();
    assert_eq!(mine.len(), 2, "the refused job left a record");
    assert!(
        h.engine
            .create_job(&me, JobSpec::download("3"))
            .await
            .is_err()
    );
    // A finished job frees its place.
    h.engine.cancel(&me, first).await.unwrap();
    h.engine
        .create_job(&me, JobSpec::download("3"))
        .await
        .unwrap();
    assert_eq!(h.engine.quotas(&me).await.unwrap().unfinished_jobs, 2);

    // BITS's values on request.
    let mut bits = config;
    bits.bits_quotas();
    assert_eq!(
        (bits.max_jobs_per_owner, bits.core.max_files_per_job),
        (60, 200)
    );
    h.engine.clone().shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_job_taken_over_is_listed_and_counted_for_its_new_owner() {
    let quota = |c: &mut ferry_actors::EngineConfig| c.max_jobs_per_owner = 1;
    let h = Harness::with(quota).await;
    let root = Principal::admin("root");
    let job = h
        .engine
        .create_job(&alice(), JobSpec::download("taken"))
        .await
        .unwrap();
    // Taking it over changes no state (it stays SUSPENDED).
    h.engine.take_ownership(&root, job).await.unwrap();
    let ids = |jobs: Vec<ferry_core::JobView>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(h.engine.list(&root, false).await.unwrap()), vec![job]);
    assert!(h.engine.list(&alice(), false).await.unwrap().is_empty());
    // Alice's quota no longer counts it: she may create another.
    assert_eq!(h.engine.quotas(&alice()).await.unwrap().unfinished_jobs, 0);
    h.engine
        .create_job(&alice(), JobSpec::download("hers"))
        .await
        .unwrap();
}
