//! End to end: the real `ferry serve` process on a temp data dir and socket,
//! driven by the real `ferry` CLI and by raw HTTP, against the loopback test
//! origin. Signals are real (SIGTERM, SIGKILL); waits poll with a deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ferry_bench::origin::Origin;
use serde_json::Value;
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_ferry");

/// A running `ferry serve`.
struct Daemon {
    child: Child,
    data: PathBuf,
    socket: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_at(data, &data.join("ferry.sock"), extra)
    }

    fn start_at(data: &Path, socket: &Path, extra: &[&str]) -> Self {
        let socket = socket.to_owned();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .arg("--socket")
            .arg(&socket)
            .arg("--retry-delay-floor")
            .arg("1")
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let daemon = Self {
            child,
            data: data.to_owned(),
            socket,
            log,
        };
        daemon.wait_log("ferry is serving");
        daemon
    }

    /// Waits for a log line containing `text`; returns it.
    fn wait_log(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no log line {text:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Runs the CLI against this daemon.
    fn ferry(&self, args: &[&str]) -> Output {
        ferry_at(&self.addr(), None, args, None)
    }

    /// Runs the CLI expecting success; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ferry(args);
        assert!(
            out.status.success(),
            "ferry {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Adds the origin's `/name` to `job`, saved at `local`.
    fn add(&self, job: &str, origin: &Origin, name: &str, local: PathBuf) {
        let url = origin.url(&format!("/{name}"));
        self.ok(&["add", job, &url, local.to_str().unwrap()]);
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "the daemon did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the job's state is `state`.
    fn wait_state(&self, job: &str, state: &str) -> Value {
        let start = Instant::now();
        loop {
            let info = self.json(&["info", job, "--json"]);
            if info["state"] == state {
                return info;
            }
            assert!(start.elapsed() < DEADLINE, "job never {state}: {info}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ferry_at(addr: &str, token: Option<&str>, args: &[&str], dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("FERRY_ADDR", addr)
        .env_remove("FERRY_TOKEN");
    if let Some(token) = token {
        cmd.env("FERRY_TOKEN", token);
    }
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.output().unwrap()
}

/// The origin runs on its own thread's actix System; tests block freely.
fn origin() -> Origin {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let origin = Origin::start().unwrap();
            tx.send(origin).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn assert_same(origin: &Origin, path: &str, file: &Path) {
    let got = std::fs::read(file).unwrap();
    let want = origin.expected(path);
    assert!(got == want, "{} differs from {path}", file.display());
}

fn wait_requested(origin: &Origin, path: &str) {
    let start = Instant::now();
    while origin.requests_of(path).is_empty() {
        assert!(start.elapsed() < DEADLINE, "{path} never requested");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_cli_drives_a_job_through_every_complete_outcome() {
    let origin = origin();
    let data = TempDir::new().unwrap();
    let down = TempDir::new().unwrap();
    let d = Daemon::start(data.path(), &[]);
    origin.add("/a", 200_000);
    origin.add("/b", 5_000);

    // create / add (a relative local name) / resume / watch / complete.
    let job = d
        .ok(&["create", "--priority", "high", "first"])
        .trim()
        .to_owned();
    assert_eq!(job.len(), 36, "{job}");
    let added = ferry_at(
        &d.addr(),
        None,
        &["add", &job, &origin.url("/a"), "a"],
        Some(down.path()),
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    d.add(&job, &origin, "b", down.path().join("b"));
    d.ok(&["set", &job, "--retry-delay", "1", "--parallel", "2"]);
    d.ok(&["resume", &job]);
    let watched = d.ferry(&["watch", &job]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let info = d.json(&["info", &job, "--json"]);
    assert_eq!(info["state"], "transferred");
    assert_eq!(info["priority"], "high");
    assert_eq!(
        info["files"][0]["local"],
        down.path().join("a").to_str().unwrap()
    );
    assert!(!down.path().join("a").exists(), "published before Complete");
    let human = d.ok(&["info", &job]);
    assert!(human.contains("state:        transferred"), "{human}");
    let files = d.ok(&["files", &job]);
    assert_eq!(files.lines().count(), 2, "{files}");
    let list = d.ok(&["list"]);
    assert!(list.contains(&job), "{list}");
    let out = d.ok(&["complete", &job]);
    assert!(out.starts_with("complete\n"), "{out}");
    assert_same(&origin, "/a", &down.path().join("a"));
    assert_same(&origin, "/b", &down.path().join("b"));
    assert!(!d.ok(&["list"]).contains(&job));
    assert_eq!(d.json(&["info", &job, "--json"])["state"], "acknowledged");

    // Partial: Complete while a file's last byte is held back.
    origin.add("/c", 1_000);
    origin.add("/held", 100_000);
    origin.hold("/held");
    let job = d.ok(&["create", "second"]).trim().to_owned();
    d.add(&job, &origin, "c", down.path().join("c"));
    d.add(&job, &origin, "held", down.path().join("held"));
    d.ok(&["resume", &job]);
    let start = Instant::now();
    while d.json(&["info", &job, "--json"])["progress"]["files_transferred"] != 1 {
        assert!(start.elapsed() < DEADLINE);
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_requested(&origin, "/held");
    let answer = d.json(&["complete", &job, "--json"]);
    assert_eq!(answer["result"], "partial_complete");
    assert_eq!(answer["files"][0]["outcome"], "saved");
    assert_eq!(answer["files"][1]["outcome"], "dropped");
    assert!(!down.path().join("held").exists());
    origin.release("/held");

    // A rename failure: exit 5 naming the file, the job stays transferred;
    // once the obstacle is gone, a second Complete publishes.
    origin.add("/r", 1_000);
    let job = d.ok(&["create", "third"]).trim().to_owned();
    let target = down.path().join("r");
    d.add(&job, &origin, "r", target.clone());
    d.ok(&["resume", &job]);
    d.wait_state(&job, "transferred");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("x"), b"x").unwrap();
    let failed = d.ferry(&["complete", &job]);
    assert_eq!(failed.status.code(), Some(5), "{}", text(&failed.stderr));
    assert!(text(&failed.stderr).contains(target.to_str().unwrap()));
    assert_eq!(d.json(&["info", &job, "--json"])["state"], "transferred");
    std::fs::remove_dir_all(&target).unwrap();
    assert!(d.ok(&["complete", &job]).starts_with("complete"));
    assert_same(&origin, "/r", &target);

    // Cancel deletes the temp files.
    let job = d.ok(&["create", "fourth"]).trim().to_owned();
    d.add(&job, &origin, "c", down.path().join("c2"));
    assert_eq!(d.ok(&["cancel", &job]).trim(), "ok");
    let leftovers: Vec<_> = std::fs::read_dir(down.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ferry-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_input_gets_a_clear_error_and_an_exit_code() {
    let data = TempDir::new().unwrap();
    let d = Daemon::start(data.path(), &[]);
    let job = d.ok(&["create", "x"]).trim().to_owned();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["add", &job, "ftp://h/f", "/tmp/f"],
            1,
            "invalid_remote_name",
        ),
        (
            &["add", &job, "http://h/f", "/nonexistent-ferry-dir/f"],
            1,
            "invalid_local_name",
        ),
        (&["resume", &job], 1, "empty_job"),
        (
            &["info", "0190d2f0-0000-7000-8000-000000000000"],
            1,
            "not_found",
        ),
        (&["info", "not-a-job"], 1, "not a job id"),
        (&["set", &job, "--parallel", "0"], 1, "invalid_argument"),
        (&["set", &job], 2, "nothing to set"),
        (&["create", "--priority", "urgent", "x"], 2, "urgent"),
    ];
    for (args, code, needle) in cases {
        let out = d.ferry(args);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // Nothing was changed by any of them.
    let info = d.json(&["info", &job, "--json"]);
    assert_eq!(info["state"], "suspended");
    assert_eq!(info["parallel_files"], 1);
    assert_eq!(info["files"].as_array().unwrap().len(), 0);

    // No daemon: exit 3 and how to start one.
    let out = ferry_at("unix:/nonexistent/ferry.sock", None, &["list"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("ferry serve"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn get_resumes_the_same_job_after_being_killed_and_then_prints_the_stored_answer() {
    let origin = origin();
    let data = TempDir::new().unwrap();
    let down = TempDir::new().unwrap();
    let state = TempDir::new().unwrap();
    let d = Daemon::start(data.path(), &[]);
    origin.add("/one.bin", 300_000);
    origin.add("/two.bin", 50_000);
    origin.hold("/one.bin");
    let args = [
        "get",
        &origin.url("/one.bin"),
        &origin.url("/two.bin"),
        "-o",
        down.path().to_str().unwrap(),
    ];
    let get = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("FERRY_ADDR", d.addr())
            .env("XDG_STATE_HOME", state.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let mut first = get(&args).spawn().unwrap();
    wait_requested(&origin, "/one.bin");
    first.kill().unwrap(); // SIGKILL
    assert_eq!(first.wait().unwrap().signal(), Some(9));
    let jobs = d.json(&["list", "--json"]);
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
    let id = jobs["jobs"][0]["id"].as_str().unwrap().to_owned();
    // As if killed while the job was being created, before its id was
    // recorded (the kill may well have come then: the transfer starts
    // before the answer to the create reaches the client): the rerun finds
    // the job by its description.
    let tags: Vec<_> = std::fs::read_dir(state.path().join("ferry/get"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none())
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    let recorded = std::fs::read_to_string(&tags[0]).unwrap();
    assert!(recorded == id || recorded == "creating", "{recorded}");
    std::fs::write(&tags[0], "creating").unwrap();

    origin.release("/one.bin");
    // The same command line (flags are not part of the job's tag).
    let second = get(&[&args[..], &["--timings"]].concat()).output().unwrap();
    assert!(second.status.success(), "{}", text(&second.stderr));
    // "ferry: transferred after X s, complete after Y s", X <= Y.
    let err = text(&second.stderr);
    let timings: Vec<f64> = err
        .lines()
        .find(|l| l.starts_with("ferry: transferred after "))
        .unwrap_or_else(|| panic!("no timings: {err}"))
        .split(' ')
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        timings.len() == 2 && timings[0] <= timings[1],
        "{timings:?} in {err}"
    );
    assert!(
        text(&second.stderr).contains(&format!("resuming job {id}")),
        "{}",
        text(&second.stderr)
    );
    assert!(
        text(&second.stdout).starts_with("complete"),
        "{}",
        text(&second.stdout)
    );
    assert_same(&origin, "/one.bin", &down.path().join("one.bin"));
    assert_same(&origin, "/two.bin", &down.path().join("two.bin"));
    // One job only, and its id recorded again.
    assert_eq!(std::fs::read_to_string(&tags[0]).unwrap(), id);

    let third = get(&args).output().unwrap();
    assert!(third.status.success());
    assert!(
        text(&third.stderr).contains("already completed"),
        "{}",
        text(&third.stderr)
    );
    assert!(text(&third.stdout).starts_with("complete"));
    // The stored answer names the files.
    let one = down.path().join("one.bin");
    assert!(
        text(&third.stdout).contains(one.to_str().unwrap()),
        "{}",
        text(&third.stdout)
    );
}

fn sigterm_or_kill_then_restart_finishes(signal: rustix::process::Signal) {
    let origin = origin();
    let data = TempDir::new().unwrap();
    let down = TempDir::new().unwrap();
    let mut d = Daemon::start(data.path(), &[]);
    origin.add("/big", 3_000_000);
    origin.add("/small", 10_000);
    origin.hold("/big");
    let job = d.ok(&["create", "survivor"]).trim().to_owned();
    d.add(&job, &origin, "big", down.path().join("big"));
    d.add(&job, &origin, "small", down.path().join("small"));
    d.ok(&["set", &job, "--parallel", "2", "--retry-delay", "1"]);
    d.ok(&["resume", &job]);
    wait_requested(&origin, "/big");
    let start = Instant::now();
    loop {
        let info = d.json(&["info", &job, "--json"]);
        if info["state"] == "transferring" && info["progress"]["files_transferred"] == 1 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "{info}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    d.signal(signal);
    let status = d.wait_exit(Duration::from_secs(15));
    if signal == rustix::process::Signal::TERM {
        assert!(status.success(), "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        d.wait_log("Stopped.");
    } else {
        assert_eq!(status.signal(), Some(9));
    }
    assert!(!down.path().join("big").exists());
    origin.release("/big");

    // A new daemon on the same data dir: the job carries on by itself.
    let d = Daemon::start(data.path(), &[]);
    let info = d.json(&["info", &job, "--json"]);
    assert_ne!(info["state"], "suspended", "{info}");
    let watched = d.ferry(&["watch", &job]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    assert!(d.ok(&["complete", &job]).starts_with("complete"));
    assert_same(&origin, "/big", &down.path().join("big"));
    assert_same(&origin, "/small", &down.path().join("small"));
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_finishes_byte_identical() {
    sigterm_or_kill_then_restart_finishes(rustix::process::Signal::TERM);
}

#[test]
fn sigkill_loses_nothing_acknowledged_and_a_restart_finishes() {
    sigterm_or_kill_then_restart_finishes(rustix::process::Signal::KILL);
}

#[test]
fn tcp_needs_a_token_and_tokens_are_users() {
    let data = TempDir::new().unwrap();
    let down = TempDir::new().unwrap();
    let config = data.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[[tokens]]\ntoken = \"bob-token-0123456789\"\nuser = \"bob\"\nroots = [{:?}]\n",
            down.path().join("bob")
        ),
    )
    .unwrap();
    std::fs::create_dir(down.path().join("bob")).unwrap();
    let d = Daemon::start(
        &data.path().join("d"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let line = d.wait_log("address=http://");
    let url = line
        .split("address=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let token = std::fs::read_to_string(d.data.join("token")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(d.data.join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let socket_mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(socket_mode & 0o777, 0o600);

    // No token, a wrong token: refused.
    let out = ferry_at(&url, None, &["list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
    let out = ferry_at(&url, Some("wrong-token-wrong-token"), &["list"], None);
    assert!(text(&out.stderr).contains("unauthorized"));

    // The daemon's token acts as the daemon's user; bob sees none of it.
    let created = ferry_at(&url, Some(&token), &["create", "mine"], None);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let job = text(&created.stdout).trim().to_owned();
    let out = ferry_at(&url, Some("bob-token-0123456789"), &["info", &job], None);
    assert!(
        text(&out.stderr).contains("not_found"),
        "{}",
        text(&out.stderr)
    );
    // Bob may publish under his root only.
    let bobs = ferry_at(
        &url,
        Some("bob-token-0123456789"),
        &["create", "bob's"],
        None,
    );
    let bobs = text(&bobs.stdout).trim().to_owned();
    let out = ferry_at(
        &url,
        Some("bob-token-0123456789"),
        &[
            "add",
            &bobs,
            "http://h/f",
            down.path().join("f").to_str().unwrap(),
        ],
        None,
    );
    assert!(
        text(&out.stderr).contains("destination_forbidden"),
        "{}",
        text(&out.stderr)
    );
    let out = ferry_at(
        &url,
        Some("bob-token-0123456789"),
        &[
            "add",
            &bobs,
            "http://h/f",
            down.path().join("bob/f").to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A token of another user may not have the daemon run a program.
    let out = ferry_at(
        &url,
        Some("bob-token-0123456789"),
        &["set", &bobs, "--notify-cmd", "/bin/true"],
        None,
    );
    assert!(
        text(&out.stderr).contains("forbidden"),
        "{}",
        text(&out.stderr)
    );
    // Tokens never reach the log.
    let log = d.log.lock().unwrap().join("\n");
    assert!(!log.contains(&token) && !log.contains("bob-token"));
}

/// A system-mode daemon in a temp dir that other uids can reach, and a copy
/// of the CLI they may run.
struct SystemDaemon {
    d: Daemon,
    dir: TempDir,
    addr: String,
    bin: PathBuf,
    args: Vec<String>,
}

impl SystemDaemon {
    /// `None` unless the tests run as root (switching uids needs it).
    fn start() -> Option<Self> {
        Self::start_with(|_| Vec::new())
    }

    /// With more flags for `ferry serve`, made knowing the temp dir.
    fn start_with(extra: impl FnOnce(&Path) -> Vec<String>) -> Option<Self> {
        if !rustix::process::getuid().is_root() {
            eprintln!("skipped: switching uids needs root");
            return None;
        }
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sockets = dir.path().join("run");
        std::fs::create_dir(&sockets).unwrap();
        std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = sockets.join("ferry.sock");
        let mut args = vec!["--system".to_owned()];
        args.extend(extra(dir.path()));
        let d = Self::serve(dir.path(), &args);
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        let addr = format!("unix:{}", socket.display());
        let bin = bin_for_others(dir.path());
        Some(Self {
            d,
            dir,
            addr,
            bin,
            args,
        })
    }

    fn serve(dir: &Path, args: &[String]) -> Daemon {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start_at(&dir.join("state"), &dir.join("run/ferry.sock"), &args)
    }

    /// SIGTERM, then the same daemon again.
    fn restart(&mut self) {
        self.d.signal(rustix::process::Signal::TERM);
        assert_eq!(self.d.wait_exit(DEADLINE).code(), Some(0));
        self.d = Self::serve(self.dir.path(), &self.args);
    }

    /// Runs the CLI as `uid` (and gid `uid`).
    fn as_uid(&self, uid: u32, args: &[&str]) -> Output {
        run_as(
            Command::new(&self.bin)
                .args(args)
                .env("FERRY_ADDR", &self.addr),
            uid,
        )
    }

    /// Runs the CLI as `uid`, expecting success; its stdout.
    fn ok_as(&self, uid: u32, args: &[&str]) -> String {
        let out = self.as_uid(uid, args);
        assert!(
            out.status.success(),
            "ferry {args:?} as {uid}: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    }

    /// A new directory owned by `uid`, mode 0755.
    fn dir_of(&self, name: &str, uid: u32) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
        dir
    }
}

const NOBODY: u32 = 65534;

/// A copy of the CLI in `dir` that other uids may run (the test binary's
/// directory may be closed to them).
fn bin_for_others(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("ferry");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs `command` as `uid` (and gid `uid`) in `/`, to its end.
fn run_as(command: &mut Command, uid: u32) -> Output {
    command.current_dir("/").uid(uid).gid(uid);
    let start = Instant::now();
    loop {
        match command.output() {
            // A test thread forking while the copy was open for writing
            // holds it open until that child execs: try again.
            Err(err)
                if err.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && start.elapsed() < DEADLINE =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
}

fn owner_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path).unwrap().uid()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn system_mode_tells_users_apart_by_their_uid() {
    let Some(s) = SystemDaemon::start() else {
        return;
    };
    let job = s.ok_as(NOBODY, &["create", "nobody's"]);
    let info: Value = serde_json::from_str(&s.ok_as(NOBODY, &["info", &job, "--json"])).unwrap();
    assert_ne!(info["owner"], "root");
    // Nobody may not have the root daemon write where nobody could not.
    let root_owned = s.dir_of("root-owned", 0);
    for local in [PathBuf::from("/etc/ferry-test-file"), root_owned.join("f")] {
        let out = s.as_uid(
            NOBODY,
            &["add", &job, "http://h/f", local.to_str().unwrap()],
        );
        assert!(
            text(&out.stderr).contains("destination_forbidden"),
            "{}",
            text(&out.stderr)
        );
    }
    // Nor through a symbolic link, even to a directory of nobody's.
    let theirs = s.dir_of("nobody", NOBODY);
    let link = s.dir.path().join("link");
    std::os::unix::fs::symlink(&theirs, &link).unwrap();
    let out = s.as_uid(
        NOBODY,
        &["add", &job, "http://h/f", link.join("f").to_str().unwrap()],
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("destination_forbidden") && err.contains("symbolic link"),
        "{err}"
    );
    s.ok_as(
        NOBODY,
        &[
            "add",
            &job,
            "http://h/f",
            theirs.join("f").to_str().unwrap(),
        ],
    );
    // The notify command runs as the job's owner: anyone may set it.
    s.ok_as(NOBODY, &["set", &job, "--notify-cmd", "/bin/true"]);
    // Another user: nothing to see, nothing to do.
    let other = s.as_uid(65533, &["info", &job]);
    assert!(
        text(&other.stderr).contains("not_found"),
        "{}",
        text(&other.stderr)
    );
    let other = s.as_uid(65533, &["cancel", &job]);
    assert_eq!(other.status.code(), Some(1));
    let other = s.as_uid(65533, &["list", "--all"]);
    assert!(text(&other.stderr).contains("access_denied"));
    // Root is an admin: sees everyone's jobs.
    let all = ferry_at(&s.addr, None, &["list", "--all", "--json"], None);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert!(
        all["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job.as_str())
    );
}

#[test]
fn system_mode_writes_as_the_caller_and_refuses_swapped_or_forbidden_directories() {
    let Some(s) = SystemDaemon::start() else {
        return;
    };
    let origin = origin();
    for name in ["a", "b", "c", "d", "e"] {
        origin.add(&format!("/{name}"), 70_000);
    }
    let url = |name: &str| origin.url(&format!("/{name}"));
    let victim = s.dir_of("victim", NOBODY);

    // The owner's transfer writes as the owner; the owner's Complete
    // publishes a file the owner owns; the notify command runs as the
    // owner, with the job id and state as its last arguments.
    let mine = s.dir_of("mine", NOBODY);
    let job = s.ok_as(NOBODY, &["create", "own"]);
    s.ok_as(
        NOBODY,
        &["add", &job, &url("a"), mine.join("a").to_str().unwrap()],
    );
    let notified = mine.join("notified");
    let script = format!("id -u > {0}; echo \"$@\" >> {0}", notified.display());
    s.ok_as(
        NOBODY,
        &[
            "set",
            &job,
            "--notify-cmd",
            "/bin/sh",
            "-c",
            &script,
            "notify",
        ],
    );
    s.ok_as(NOBODY, &["resume", &job]);
    s.d.wait_state(&job, "transferred");
    let temps: Vec<String> = entries(&mine)
        .into_iter()
        .filter(|n| n.starts_with(".ferry-"))
        .collect();
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(owner_of(&mine.join(&temps[0])), NOBODY);
    s.ok_as(NOBODY, &["complete", &job]);
    assert_same(&origin, "/a", &mine.join("a"));
    assert_eq!(owner_of(&mine.join("a")), NOBODY);
    let start = Instant::now();
    let said = loop {
        let said = std::fs::read_to_string(&notified).unwrap_or_default();
        if said.lines().count() == 2 {
            break said;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "notify command never ran: {said:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(said, format!("{NOBODY}\n{job} transferred\n"));
    assert_eq!(owner_of(&notified), NOBODY);

    // An admin who completes someone's job owns the files (BITS 1.5+).
    let job = s.ok_as(NOBODY, &["create", "admin completes"]);
    s.ok_as(
        NOBODY,
        &["add", &job, &url("b"), mine.join("b").to_str().unwrap()],
    );
    s.ok_as(NOBODY, &["resume", &job]);
    s.d.wait_state(&job, "transferred");
    s.d.ok(&["complete", &job]);
    assert_same(&origin, "/b", &mine.join("b"));
    assert_eq!(owner_of(&mine.join("b")), 0);

    // A temp file swapped for a hard link to someone else's file (as on a
    // system without fs.protected_hardlinks): never given to the caller.
    let secret_dir = s.dir_of("secret", 0);
    let secret = secret_dir.join("secret");
    std::fs::write(&secret, "root's").unwrap();
    let job = s.ok_as(NOBODY, &["create", "hard link"]);
    s.ok_as(
        NOBODY,
        &["add", &job, &url("b"), mine.join("h").to_str().unwrap()],
    );
    s.ok_as(NOBODY, &["resume", &job]);
    s.d.wait_state(&job, "transferred");
    let temp = entries(&mine)
        .into_iter()
        .find(|n| n.starts_with(".ferry-"))
        .unwrap();
    std::fs::remove_file(mine.join(&temp)).unwrap();
    std::fs::hard_link(&secret, mine.join(&temp)).unwrap();
    let mtime = std::fs::metadata(&secret).unwrap().modified().unwrap();
    let out = s.as_uid(NOBODY, &["complete", &job]);
    assert!(
        text(&out.stderr).contains("rename_failed"),
        "{}",
        text(&out.stderr)
    );
    // Nor by root completing it: the engine's rights never touch it.
    let out = s.d.ferry(&["complete", &job]);
    assert!(
        text(&out.stderr).contains("not the job owner's temp file"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(owner_of(&secret), 0);
    assert_eq!(
        std::fs::metadata(&secret).unwrap().modified().unwrap(),
        mtime
    );
    assert!(!mine.join("h").exists());
    s.ok_as(NOBODY, &["cancel", &job]);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root's");

    // An admin's Complete renames with the owner's rights: no replacing
    // another user's file in a sticky directory, which root could.
    use std::os::unix::fs::PermissionsExt as _;
    let sticky = s.dir_of("sticky", 0);
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victims = sticky.join("victim's");
    std::fs::write(&victims, "someone else's").unwrap();
    std::os::unix::fs::chown(&victims, Some(65533), Some(65533)).unwrap();
    let job = s.ok_as(NOBODY, &["create", "sticky"]);
    s.ok_as(NOBODY, &["add", &job, &url("b"), victims.to_str().unwrap()]);
    s.ok_as(NOBODY, &["resume", &job]);
    s.d.wait_state(&job, "transferred");
    let out = s.d.ferry(&["complete", &job]);
    assert!(
        text(&out.stderr).contains("rename_failed"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victims).unwrap(), "someone else's");
    s.d.ok(&["cancel", &job]);
    assert_eq!(entries(&sticky), vec!["victim's".to_owned()]);

    // The destination directory swapped for a symlink after the file was
    // added: the transfer is refused, nothing is written anywhere.
    let swapped = s.dir_of("swapped", NOBODY);
    let job = s.ok_as(NOBODY, &["create", "swapped before"]);
    s.ok_as(
        NOBODY,
        &["add", &job, &url("c"), swapped.join("c").to_str().unwrap()],
    );
    let old = s.dir.path().join("swapped.old");
    std::fs::rename(&swapped, &old).unwrap();
    std::os::unix::fs::symlink(&victim, &swapped).unwrap();
    s.ok_as(NOBODY, &["resume", &job]);
    let info = s.d.wait_state(&job, "error");
    let message = info["error"]["message"].as_str().unwrap();
    assert!(message.contains("symbolic link"), "{info}");
    assert!(entries(&victim).is_empty(), "{:?}", entries(&victim));
    assert!(entries(&old).is_empty(), "{:?}", entries(&old));
    s.ok_as(NOBODY, &["cancel", &job]);

    // Replaced by another directory (nobody's own) after the add: not the
    // directory the file was added in, refused.
    let replaced = s.dir_of("replaced", NOBODY);
    let job = s.ok_as(NOBODY, &["create", "replaced"]);
    s.ok_as(
        NOBODY,
        &["add", &job, &url("c"), replaced.join("c").to_str().unwrap()],
    );
    let old = s.dir.path().join("replaced.old");
    std::fs::rename(&replaced, &old).unwrap();
    std::fs::create_dir(&replaced).unwrap();
    std::os::unix::fs::chown(&replaced, Some(NOBODY), Some(NOBODY)).unwrap();
    s.ok_as(NOBODY, &["resume", &job]);
    let info = s.d.wait_state(&job, "error");
    assert!(
        info["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replaced"),
        "{info}"
    );
    assert!(entries(&replaced).is_empty() && entries(&old).is_empty());
    s.ok_as(NOBODY, &["cancel", &job]);

    // Swapped after the transfer, before Complete: the rename is refused,
    // the job stays TRANSFERRED; put back, Complete succeeds.
    let swapped = s.dir_of("swapped2", NOBODY);
    let job = s.ok_as(NOBODY, &["create", "swapped after"]);
    s.ok_as(
        NOBODY,
        &["add", &job, &url("d"), swapped.join("d").to_str().unwrap()],
    );
    s.ok_as(NOBODY, &["resume", &job]);
    s.d.wait_state(&job, "transferred");
    let old = s.dir.path().join("swapped2.old");
    std::fs::rename(&swapped, &old).unwrap();
    std::os::unix::fs::symlink(&victim, &swapped).unwrap();
    let out = s.as_uid(NOBODY, &["complete", &job]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("rename_failed"),
        "{}",
        text(&out.stderr)
    );
    assert!(entries(&victim).is_empty(), "{:?}", entries(&victim));
    assert_eq!(s.d.json(&["info", &job, "--json"])["state"], "transferred");
    // A different directory at the same path is refused too.
    std::fs::remove_file(&swapped).unwrap();
    std::fs::create_dir(&swapped).unwrap();
    std::os::unix::fs::chown(&swapped, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = s.as_uid(NOBODY, &["complete", &job]);
    assert!(
        text(&out.stderr).contains("rename_failed"),
        "{}",
        text(&out.stderr)
    );
    assert!(entries(&swapped).is_empty());
    std::fs::remove_dir(&swapped).unwrap();
    std::fs::rename(&old, &swapped).unwrap();
    s.ok_as(NOBODY, &["complete", &job]);
    assert_same(&origin, "/d", &swapped.join("d"));
    assert!(entries(&victim).is_empty());

    // A directory taken out of the owner's reach after the add: the
    // transfer runs with the owner's rights and is refused.
    let taken = s.dir_of("taken", NOBODY);
    let job = s.ok_as(NOBODY, &["create", "taken"]);
    s.ok_as(
        NOBODY,
        &["add", &job, &url("e"), taken.join("e").to_str().unwrap()],
    );
    std::os::unix::fs::chown(&taken, Some(0), Some(0)).unwrap();
    s.ok_as(NOBODY, &["resume", &job]);
    let info = s.d.wait_state(&job, "error");
    assert!(
        info["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ermission denied"),
        "{info}"
    );
    assert!(entries(&taken).is_empty(), "{:?}", entries(&taken));
}

#[test]
fn serve_explains_its_settings_and_refuses_a_busy_data_dir() {
    let data = TempDir::new().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--print-config", "--data-dir"])
        .arg(data.path())
        .env("FERRY_MAX_TRANSFERS", "3")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = text(&out.stdout);
    assert!(printed.contains("max_transfers = 3"), "{printed}");
    assert!(
        printed.contains(&format!("data_dir = \"{}\"", data.path().display())),
        "{printed}"
    );

    let _d = Daemon::start(data.path(), &[]);
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .arg("--socket")
        .arg(data.path().join("other.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("in use by another ferry daemon"),
        "{}",
        text(&out.stderr)
    );
    // Same socket: refused too, and the running daemon keeps its socket.
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data.path().join("elsewhere"))
        .arg("--socket")
        .arg(data.path().join("ferry.sock"))
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("another ferry daemon"),
        "{}",
        text(&out.stderr)
    );
    assert!(_d.ok(&["list"]).is_empty());
}

#[test]
fn serve_refuses_an_unknown_schema_and_an_unwritable_data_dir() {
    let data = TempDir::new().unwrap();
    // A store written by a build of another schema version: refused, and
    // left as it was.
    let store = data.path().join("store");
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&options, &store, ["meta"]).unwrap();
        db.put_cf(db.cf_handle("meta").unwrap(), b"schema_version", [99])
            .unwrap();
    }
    for _ in 0..2 {
        let out = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains("schema version 99"), "{err}");
    }
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: an unwritable data dir needs another uid");
        return;
    }
    // A data dir its user may not create: the path and the reason.
    use std::os::unix::fs::PermissionsExt as _;
    let closed = TempDir::new().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_for_others(closed.path());
    let wanted = closed.path().join("data");
    let out = run_as(
        Command::new(&bin)
            .args(["serve", "--data-dir"])
            .arg(&wanted),
        NOBODY,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(wanted.to_str().unwrap()) && err.contains("ermission denied"),
        "{err}"
    );
    assert!(!wanted.exists());
}

#[test]
fn a_second_signal_exits_at_once() {
    let data = TempDir::new().unwrap();
    let mut d = Daemon::start(data.path(), &[]);
    // An open event stream keeps the graceful stop waiting (up to 2 s).
    let mut stream = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /v1/events HTTP/1.1\r\nHost: ferry\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    d.signal(rustix::process::Signal::TERM);
    d.wait_log("Stopping");
    d.signal(rustix::process::Signal::TERM);
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(d.wait_log("Second signal").contains("exiting now"));
}

#[test]
fn watch_without_a_job_follows_every_active_job_of_the_caller() {
    let origin = origin();
    let data = TempDir::new().unwrap();
    let down = TempDir::new().unwrap();
    let d = Daemon::start(data.path(), &[]);
    origin.add("/w1", 300_000);
    let good = d.ok(&["create", "good"]).trim().to_owned();
    d.add(&good, &origin, "w1", down.path().join("w1"));
    // Not on the origin: a 404, a fatal error.
    let bad = d.ok(&["create", "bad"]).trim().to_owned();
    d.add(&bad, &origin, "missing", down.path().join("missing"));
    d.ok(&["resume", &good]);
    d.ok(&["resume", &bad]);
    let out = d.ferry(&["watch"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(d.json(&["info", &good, "--json"])["state"], "transferred");
    assert_eq!(d.json(&["info", &bad, "--json"])["state"], "error");
    d.ok(&["cancel", &bad]);
    let out = d.ferry(&["watch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn system_mode_tokens_act_as_their_uid_and_bad_token_users_are_refused() {
    let data = TempDir::new().unwrap();
    let refused = |config: &str, system: bool| {
        let path = data.path().join("bad.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--data-dir"])
            .arg(data.path().join("d"))
            .arg("--socket")
            .arg(data.path().join("s.sock"))
            .arg("--config")
            .arg(&path);
        if system {
            cmd.arg("--system");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        text(&out.stderr)
    };
    let token = |user: &str, uid: &str| {
        format!("[[tokens]]\ntoken = \"token-0123456789abcdef\"\nuser = \"{user}\"\n{uid}")
    };
    let err = refused(&token("no-such-user-for-ferry", ""), true);
    assert!(err.contains("give the token a `uid`"), "{err}");
    let err = refused(&token("root", "uid = 5\n"), true);
    assert!(err.contains("system user of uid 0, not 5"), "{err}");
    let err = refused(&token("someone", "uid = 4000000\n"), false);
    assert!(err.contains("needs --system"), "{err}");
    let err = refused(&token("uid:0", ""), true);
    assert!(err.contains("uids go in `uid`"), "{err}");

    let Some(s) = SystemDaemon::start_with(|dir| {
        let config = dir.join("ferry.toml");
        std::fs::write(&config, token("robot", "uid = 65534\n")).unwrap();
        vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--config".into(),
            config.to_str().unwrap().into(),
        ]
    }) else {
        return;
    };
    let line = s.d.wait_log("address=http://");
    let url = line
        .split("address=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let robot = |args: &[&str]| ferry_at(&url, Some("token-0123456789abcdef"), args, None);
    let origin = origin();
    origin.add("/t", 20_000);
    let job = text(&robot(&["create", "robot's"]).stdout)
        .trim()
        .to_owned();
    let root_owned = s.dir_of("root-owned", 0);
    let out = robot(&[
        "add",
        &job,
        &origin.url("/t"),
        root_owned.join("t").to_str().unwrap(),
    ]);
    assert!(
        text(&out.stderr).contains("destination_forbidden"),
        "{}",
        text(&out.stderr)
    );
    let theirs = s.dir_of("nobody", NOBODY);
    let out = robot(&[
        "add",
        &job,
        &origin.url("/t"),
        theirs.join("t").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(robot(&["resume", &job]).status.success());
    s.d.wait_state(&job, "transferred");
    let out = robot(&["complete", &job]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_same(&origin, "/t", &theirs.join("t"));
    assert_eq!(owner_of(&theirs.join("t")), NOBODY);
    assert!(entries(&root_owned).is_empty());
}

#[test]
fn system_mode_directory_pins_hold_across_a_restart() {
    let Some(mut s) = SystemDaemon::start() else {
        return;
    };
    let origin = origin();
    origin.add("/p", 10_000);
    let dir = s.dir_of("pinned", NOBODY);
    let job = s.ok_as(NOBODY, &["create", "pinned"]);
    s.ok_as(
        NOBODY,
        &[
            "add",
            &job,
            &origin.url("/p"),
            dir.join("p").to_str().unwrap(),
        ],
    );
    // Replaced while the daemon is down: the pin recorded at add refuses it.
    s.restart();
    let old = s.dir.path().join("pinned.old");
    std::fs::rename(&dir, &old).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    s.restart();
    s.ok_as(NOBODY, &["resume", &job]);
    let info = s.d.wait_state(&job, "error");
    assert!(
        info["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replaced"),
        "{info}"
    );
    assert!(entries(&dir).is_empty() && entries(&old).is_empty());
    // The original back: the job goes on and completes.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::rename(&old, &dir).unwrap();
    s.ok_as(NOBODY, &["resume", &job]);
    s.d.wait_state(&job, "transferred");
    s.ok_as(NOBODY, &["complete", &job]);
    assert_same(&origin, "/p", &dir.join("p"));
}

#[test]
fn system_mode_admins_act_on_all_jobs_but_set_no_program_on_others() {
    let Some(s) = SystemDaemon::start_with(|_| vec!["--admin-group".into(), "nogroup".into()])
    else {
        return;
    };
    // uid 65533 (no passwd entry) owns a job; nobody (group nogroup) is an
    // admin.
    let theirs = s.ok_as(65533, &["create", "theirs"]);
    let all: Value = serde_json::from_str(&s.ok_as(NOBODY, &["list", "--all", "--json"])).unwrap();
    assert!(
        all["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == theirs.as_str())
    );
    s.ok_as(NOBODY, &["set", &theirs, "--priority", "low"]);
    // The program would run as 65533: not the admin's to choose.
    let out = s.as_uid(NOBODY, &["set", &theirs, "--notify-cmd", "/bin/true"]);
    assert!(
        text(&out.stderr).contains("forbidden"),
        "{}",
        text(&out.stderr)
    );
    // The owner may; so may root.
    s.ok_as(65533, &["set", &theirs, "--notify-cmd", "/bin/true"]);
    s.d.ok(&["set", &theirs, "--notify-cmd", "/bin/true"]);
    let info = s.d.json(&["info", &theirs, "--json"]);
    assert_eq!(info["owner"], "uid:65533");
    assert_eq!(info["priority"], "low");
}

#[test]
fn limits_quotas_and_a_jobs_bandwidth_cap_from_the_cli() {
    let data = TempDir::new().unwrap();
    let d = Daemon::start(
        data.path(),
        &["--bits-quotas", "--max-bytes-per-second", "500000"],
    );
    let limits = d.json(&["limits", "--json"]);
    assert_eq!(limits["max_bytes_per_second"], 500_000, "{limits}");
    assert_eq!(limits["time_slice_secs"], 60, "{limits}");
    // Root is an admin: it changes them while the daemon runs.
    let changed = d.json(&[
        "limits",
        "--max-transfers",
        "3",
        "--max-transfers-per-host",
        "2",
        "--time-slice",
        "5",
        "--no-bandwidth-cap",
        "--json",
    ]);
    assert_eq!(
        changed,
        serde_json::json!({"max_transfers": 3, "max_transfers_per_host": 2,
            "max_bytes_per_second": null, "time_slice_secs": 5,
            "bandwidth_schedule": [],
            "in_force": {"window": null, "max_bytes_per_second": null,
                "background_paused": false, "until": null}})
    );
    assert_eq!(d.json(&["limits", "--json"]), changed);
    let shown = d.ok(&["limits", "--max-bytes-per-second", "1000000"]);
    assert!(shown.contains("at most 1000000 bytes/s"), "{shown}");
    assert!(shown.contains("at most 3 at once"), "{shown}");
    let out = d.ferry(&["limits", "--max-transfers", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("invalid_argument"));
    assert_eq!(d.json(&["limits", "--json"])["max_transfers"], 3);

    let quotas = d.json(&["quotas", "--json"]);
    assert_eq!(quotas["max_jobs_per_owner"], 60, "{quotas}");
    assert_eq!(quotas["max_files_per_job"], 200, "{quotas}");
    assert_eq!(quotas["exempt"], true, "{quotas}");
    assert!(d.ok(&["quotas"]).contains("at most 200 per job"));

    let job = d.ok(&["create", "capped"]).trim().to_owned();
    d.ok(&["set", &job, "--max-bytes-per-second", "4096"]);
    assert_eq!(
        d.json(&["info", &job, "--json"])["max_bytes_per_second"],
        4096
    );
    assert!(d.ok(&["info", &job]).contains("at most 4096 bytes/s"));
    let out = d.ferry(&["set", &job, "--max-bytes-per-second", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    d.ok(&["set", &job, "--no-bandwidth-cap"]);
    assert_eq!(
        d.json(&["info", &job, "--json"])["max_bytes_per_second"],
        Value::Null
    );

    // A pause window holds background jobs, and says so; without it they go.
    let origin = origin();
    origin.add("/paused", 1_000);
    let down = TempDir::new().unwrap();
    d.add(&job, &origin, "paused", down.path().join("paused"));
    let limits = d.json(&["limits", "--window", "all 00:00-24:00 pause", "--json"]);
    assert_eq!(limits["bandwidth_schedule"][0], "all 00:00-24:00 pause");
    assert_eq!(limits["in_force"]["background_paused"], true, "{limits}");
    let shown = d.ok(&["limits"]);
    assert!(shown.contains("(in force)"), "{shown}");
    assert!(shown.contains("background jobs paused"), "{shown}");
    d.ok(&["resume", &job]);
    let info = d.json(&["info", &job, "--json"]);
    assert_eq!(info["waiting"]["reason"], "schedule_window", "{info}");
    assert!(d.ok(&["info", &job]).contains("bandwidth window pauses"));
    let out = d.ferry(&["limits", "--window", "mon 25:00-26:00 5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    d.ok(&["limits", "--no-windows"]);
    d.wait_state(&job, "transferred");
}

/// A certificate in PEM.
fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// An https origin whose certificate only a root given to `ferry serve
/// --tls-root` makes trusted; the origin runs on its own thread's System.
fn tls_origin() -> (Origin, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = pem_of(cert.cert.der());
    let (der, key) = (cert.cert.der().to_vec(), cert.signing_key.serialize_der());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let origin = Origin::start_tls(vec![der], key).unwrap();
            tx.send(origin).unwrap();
            std::future::pending::<()>().await;
        });
    });
    (rx.recv().unwrap(), pem)
}

#[test]
fn serve_trusts_the_roots_given_with_tls_root_and_refuses_unusable_ones() {
    let (origin, pem) = tls_origin();
    origin.add("/secure.bin", 400_000);
    let url = format!("https://localhost:{}/secure.bin", origin.addr().port());
    let data = TempDir::new().unwrap();
    let down = TempDir::new().unwrap();
    let local = down.path().join("secure.bin");

    // Without the root, no request passes the handshake.
    let mut d = Daemon::start(data.path(), &[]);
    let job = d.ok(&["create", "secure"]).trim().to_owned();
    d.ok(&["add", &job, &url, local.to_str().unwrap()]);
    d.ok(&["resume", &job]);
    let start = Instant::now();
    loop {
        let info = d.json(&["info", &job, "--json"]);
        if info["state"] == "transient_error" || info["state"] == "error" {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "job never failed: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(origin.requests_of("/secure.bin").is_empty());
    d.signal(rustix::process::Signal::TERM);
    assert!(d.wait_exit(DEADLINE).success());
    drop(d);

    // Unusable roots stop the daemon before it starts, naming the file.
    let missing = down.path().join("missing.pem");
    let junk = down.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let truncated = down.path().join("truncated.pem");
    std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
    for (path, why) in [
        (&missing, "missing.pem"),
        (&junk, "no PEM certificate"),
        (&truncated, "truncated.pem"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(data.path())
            .arg("--tls-root")
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }

    // Only the given roots, and none given: refused.
    let out = Command::new(BIN)
        .args(["serve", "--no-tls-web-roots", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("tls_web_roots"),
        "{}",
        text(&out.stderr)
    );

    // With it (and it alone), the same job finishes.
    let root = down.path().join("ca.pem");
    std::fs::write(&root, &pem).unwrap();
    let d = Daemon::start(
        data.path(),
        &["--tls-root", root.to_str().unwrap(), "--no-tls-web-roots"],
    );
    d.ok(&["resume", &job]);
    let watched = d.ferry(&["watch", &job]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    d.ok(&["complete", &job]);
    assert_same(&origin, "/secure.bin", &local);
}

#[test]
fn system_mode_a_refused_add_leaves_no_pin_and_pins_still_refuse_a_replaced_directory() {
    let Some(s) = SystemDaemon::start() else {
        return;
    };
    let origin = origin();
    origin.add("/q", 10_000);
    origin.add("/r", 10_000);
    let dir = s.dir_of("later", NOBODY);
    let local = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let replace = |aside: &str| {
        std::fs::rename(&dir, s.dir.path().join(aside)).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    };
    let job = s.ok_as(NOBODY, &["create", "refused"]);
    // The destination check passes (and pins `later`), then the core
    // refuses the URL: nothing of this add may stay with the job.
    let out = s.as_uid(
        NOBODY,
        &["add", &job, "ftp://example.invalid/q", &local("q")],
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    replace("later.old");
    s.ok_as(NOBODY, &["add", &job, &origin.url("/q"), &local("q")]);

    // The directory the job now uses, replaced: a further add there is
    // refused, and so is a transfer.
    replace("later.2");
    let out = s.as_uid(NOBODY, &["add", &job, &origin.url("/r"), &local("r")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("replaced"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir(&dir).unwrap();
    std::fs::rename(s.dir.path().join("later.2"), &dir).unwrap();
    s.ok_as(NOBODY, &["resume", &job]);
    s.d.wait_state(&job, "transferred");
    s.ok_as(NOBODY, &["complete", &job]);
    assert_same(&origin, "/q", &dir.join("q"));
    assert_eq!(entries(&dir), vec!["q"]);
}
