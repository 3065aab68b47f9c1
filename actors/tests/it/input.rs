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
