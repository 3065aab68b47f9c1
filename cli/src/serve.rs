//! `ferry serve`: the engine behind the HTTP API on a Unix socket (and an
//! opt-in TCP listener), until SIGTERM or SIGINT.

use std::{
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpServer};
use ferry_actors::{
    Engine, EngineError, StoreError,
    api::{self, Api, AuthError, Authenticator, Tokens},
};
use ferry_core::Principal;

use crate::{
    config::{LogFormat, ServeConfig},
    identity::{self, SystemIdentities},
};

/// Why the daemon could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data dir is held by another daemon.
    #[error("the data dir {0} is in use by another ferry daemon")]
    Locked(PathBuf),
    /// The data dir holds a store of another version.
    #[error("{0}")]
    Schema(String),
    /// The data dir or socket could not be set up.
    #[error("{path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another daemon answers on the socket.
    #[error("another ferry daemon is listening on {0}")]
    SocketInUse(PathBuf),
    /// The engine failed.
    #[error("engine: {0}")]
    Engine(String),
    /// The settings are wrong.
    #[error("{0}")]
    Config(String),
}

/// Installs the log subscriber: `RUST_LOG` filters (default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Who calls, in the daemon: the Unix socket's peer (by uid), or a bearer
/// token on TCP.
struct DaemonAuth {
    system: bool,
    /// uid 0's name (looked up once: not a passwd read per request).
    root_user: String,
    daemon_uid: u32,
    daemon_user: String,
    /// User names by uid, looked up once (a passwd lookup reads files or
    /// asks NSS: not on every request's arbiter turn).
    names: std::sync::Mutex<std::collections::HashMap<u32, String>>,
    admin_group: Option<(u32, Vec<String>)>,
    tokens: Tokens,
    /// Per token user: the roots it may publish under (empty: anywhere).
    roots: Vec<(String, Vec<PathBuf>)>,
}

impl DaemonAuth {
    fn name_of(&self, uid: u32) -> String {
        let Ok(mut names) = self.names.lock() else {
            return identity::user_name(uid);
        };
        names
            .entry(uid)
            .or_insert_with(|| identity::user_name(uid))
            .clone()
    }

    fn is_admin(&self, uid: u32, gid: u32, name: &str) -> bool {
        if uid == 0 {
            return true;
        }
        match &self.admin_group {
            Some((group, members)) => gid == *group || members.iter().any(|m| m == name),
            None => false,
        }
    }
}

impl Authenticator for DaemonAuth {
    fn principal(&self, req: &HttpRequest) -> Result<Principal, AuthError> {
        if let Some(peer) = api::peer_cred(req) {
            if !self.system && peer.uid != self.daemon_uid && peer.uid != 0 {
                return Err(AuthError::Forbidden(
                    "this is a user-mode daemon of another user".into(),
                ));
            }
            let name = self.name_of(peer.uid);
            let admin = self.is_admin(peer.uid, peer.gid, &name);
            return Ok(Principal { user: name, admin });
        }
        let token = api::bearer_token(req).ok_or(AuthError::Missing)?;
        self.tokens.find(token).cloned().ok_or(AuthError::Invalid)
    }

    fn may_write(&self, who: &Principal, local: &Path) -> bool {
        // A token's roots. Beyond them the engine decides, with the rights
        // of the job's owner (in system mode every file operation runs with
        // that user's identity).
        match self.roots.iter().find(|(user, _)| *user == who.user) {
            Some((_, roots)) if !roots.is_empty() => roots.iter().any(|r| local.starts_with(r)),
            _ => true,
        }
    }

    fn may_set_notify(&self, who: &Principal, owner: &str) -> bool {
        if self.system {
            // The program runs as the job's owner: set by that owner, or by
            // root (who could run it as anyone anyway), never by an admin
            // on someone else's job.
            return who.user == owner || who.user == self.root_user;
        }
        // In user mode the program runs as the daemon's user: only that
        // user and admins may set it.
        who.admin || who.user == self.daemon_user
    }
}

/// System mode: who each principal is on this system (token users by their
/// `uid` or their name). User mode: `None`, everything runs as the daemon's
/// user, so a token may name no other uid.
fn identities(
    config: &ServeConfig,
    daemon_uid: u32,
) -> Result<Option<std::sync::Arc<dyn ferry_actors::Identities>>, ServeError> {
    if !config.system {
        if let Some(t) = config
            .tokens
            .iter()
            .find(|t| t.uid.is_some_and(|u| u != daemon_uid))
        {
            return Err(ServeError::Config(format!(
                "token user {:?}: a user-mode daemon acts only as its own user (uid {daemon_uid}); `uid` needs --system",
                t.user
            )));
        }
        return Ok(None);
    }
    let mut uids = std::collections::HashMap::new();
    for t in &config.tokens {
        let named = identity::user_by_name(&t.user).ok().flatten();
        match (t.uid, named) {
            (Some(uid), Some(user)) if user.uid.as_raw() != uid => {
                return Err(ServeError::Config(format!(
                    "token user {:?} is the system user of uid {}, not {uid}",
                    t.user,
                    user.uid.as_raw()
                )));
            }
            (Some(uid), _) => {
                uids.insert(t.user.clone(), uid);
            }
            (None, Some(_)) => {}
            (None, None) => {
                return Err(ServeError::Config(format!(
                    "token user {:?} is no user of this system: give the token a `uid`",
                    t.user
                )));
            }
        }
    }
    if !rustix::process::geteuid().is_root() {
        return Err(ServeError::Config(
            "--system acts for every local user with that user's own rights: run it as root".into(),
        ));
    }
    Ok(Some(std::sync::Arc::new(SystemIdentities::new(uids))))
}

/// The generated token in `data_dir/token` (0600), created at first start.
fn daemon_token(data_dir: &Path) -> Result<String, ServeError> {
    let path = data_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServeError::Path { path, source }),
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(token.as_bytes())?;
            f.sync_all()
        })
        .map_err(|source| ServeError::Path {
            path: path.clone(),
            source,
        })?;
    Ok(token)
}

/// Binds the Unix socket: refuses one another daemon answers on, replaces a
/// stale one, and sets its mode (0600 user, 0666 system).
fn bind_socket(path: &Path, system: bool) -> Result<std::os::unix::net::UnixListener, ServeError> {
    let io = |source| ServeError::Path {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    // The socket is created 0600 (umask 0177) and only then opened up in
    // system mode: never a moment where others could connect in user mode.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = listener.map_err(io)?;
    let mode = if system { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    Ok(listener)
}

fn start_error(err: EngineError, data_dir: &Path) -> ServeError {
    match err {
        EngineError::Open(StoreError::SchemaVersion { .. }) => ServeError::Schema(err.to_string()),
        EngineError::Open(StoreError::Rocks(ref rocks)) if rocks.to_string().contains("lock") => {
            ServeError::Locked(data_dir.to_owned())
        }
        other => ServeError::Engine(other.to_string()),
    }
}

/// Runs the daemon until a signal; returns once everything is checkpointed.
/// Raises the soft limit of open files to the hard one: the daemon keeps a
/// file open for every transfer and every file being synced (up to 4,096
/// at once, or a quarter of this limit if that is less, but at least 512),
/// and a soft limit of 1,024 is common. Failing that, it says so and goes
/// on.
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(message = "Could not raise the open-file limit.", error = %err);
        }
    }
}

pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    config
        .validate()
        .map_err(|err| ServeError::Config(err.to_string()))?;
    let tls_roots = config
        .read_tls_roots()
        .map_err(|err| ServeError::Config(err.to_string()))?;
    // Signals are caught from the very start (a SIGTERM while the store
    // opens must not kill the process half set up).
    let mut signals = Signals::new();
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::Path {
        path: data_dir.clone(),
        source,
    })?;
    // The data dir holds the token and the store: the daemon's alone.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
        |source| ServeError::Path {
            path: data_dir.clone(),
            source,
        },
    )?;
    raise_file_limit();
    let daemon_uid = rustix::process::getuid().as_raw();
    let mut engine_config = config.engine();
    engine_config.tls_roots = tls_roots;
    engine_config.identities = identities(&config, daemon_uid)?;
    let engine = {
        let start = std::pin::pin!(Engine::start(engine_config));
        let signal = std::pin::pin!(signals.next());
        match futures_util::future::select(start, signal).await {
            futures_util::future::Either::Left((started, _)) => {
                started.map_err(|err| start_error(err, &data_dir))?
            }
            futures_util::future::Either::Right(((), _)) => {
                tracing::info!(message = "Stopped before the engine started.");
                return Ok(());
            }
        }
    };

    let daemon_user = identity::user_name(daemon_uid);
    let mut tokens = Tokens::new();
    let mut roots = Vec::new();
    if config.listen.is_some() {
        let token = daemon_token(&data_dir)?;
        tokens.insert(&token, Principal::user(daemon_user.clone()));
    }
    for t in &config.tokens {
        tokens.insert(
            &t.token,
            Principal {
                user: t.user.clone(),
                admin: t.admin,
            },
        );
        roots.push((t.user.clone(), t.roots.clone()));
    }
    let admin_group = match &config.admin_group {
        None => None,
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(group)) => Some((group.gid.as_raw(), group.mem)),
            _ => return Err(ServeError::Config(format!("no group named {name:?}"))),
        },
    };
    let auth = DaemonAuth {
        system: config.system,
        daemon_uid,
        root_user: identity::user_name(0),
        daemon_user: daemon_user.clone(),
        names: std::sync::Mutex::new(std::collections::HashMap::from([(daemon_uid, daemon_user)])),
        admin_group,
        tokens,
        roots,
    };
    let api = Api::new(engine.clone(), auth);
    let listener = match bind_socket(&config.socket, config.system) {
        Ok(l) => l,
        Err(err) => {
            let _ = engine.shutdown().await;
            return Err(err);
        }
    };
    let app_api = api.clone();
    let mut server = HttpServer::new(move || App::new().configure(app_api.configure()))
        .workers(2)
        .disable_signals()
        // Event streams never end by themselves: give them a moment only.
        .shutdown_timeout(2)
        .on_connect(api::record_peer_cred)
        .listen_uds(listener)
        .map_err(|source| ServeError::Path {
            path: config.socket.clone(),
            source,
        })?;
    tracing::info!(message = "Listening.", address = %format!("unix:{}", config.socket.display()));
    if let Some(listen) = &config.listen {
        let tcp_error = |source| ServeError::Path {
            path: PathBuf::from(listen),
            source,
        };
        let tcp = std::net::TcpListener::bind(listen).map_err(tcp_error)?;
        let addr = tcp.local_addr().map_err(tcp_error)?;
        server = server.listen(tcp).map_err(tcp_error)?;
        tracing::info!(message = "Listening.", address = %format!("http://{addr}"));
    }
    let server = server.run();
    let handle = server.handle();
    let serving = actix_rt::spawn(server);
    tracing::info!(
        message = "ferry is serving.",
        data_dir = %data_dir.display(),
        mode = if config.system { "system" } else { "user" }
    );

    signals.next().await;
    tracing::info!(message = "Stopping: transfers stop at their next chunk.");
    // A second signal: out at once.
    actix_rt::spawn(async move {
        signals.next().await;
        tracing::warn!(message = "Second signal: exiting now.");
        std::process::exit(130);
    });
    let socket = config.socket.clone();
    let stopped = async move {
        handle.stop(true).await;
        let _ = serving.await;
        drop(api);
        engine.shutdown().await
    };
    let result = match actix_rt::time::timeout(Duration::from_secs(9), stopped).await {
        Ok(result) => result.map_err(|err| ServeError::Engine(err.to_string())),
        Err(_) => Err(ServeError::Engine(
            "the engine did not stop within 9 seconds".into(),
        )),
    };
    let _ = std::fs::remove_file(&socket);
    tracing::info!(message = "Stopped.");
    result
}

/// SIGTERM and SIGINT, caught for the daemon's whole life.
struct Signals {
    streams: Option<(
        actix_rt::signal::unix::Signal,
        actix_rt::signal::unix::Signal,
    )>,
}

impl Signals {
    fn new() -> Self {
        use actix_rt::signal::unix::{SignalKind, signal};
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => {
                tracing::warn!(message = "Cannot catch signals: stop the daemon with SIGKILL.");
                None
            }
        };
        Self { streams }
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        match &mut self.streams {
            Some((term, int)) => {
                let term = std::pin::pin!(term.recv());
                let int = std::pin::pin!(int.recv());
                let _ = futures_util::future::select(term, int).await;
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        // A soft limit below the hard one first (tests of this binary
        // still have 512 files meanwhile).
        let before = getrlimit(Resource::Nofile);
        let lower = Rlimit {
            current: Some(512),
            maximum: before.maximum,
        };
        setrlimit(Resource::Nofile, lower).unwrap();
        assert_eq!(getrlimit(Resource::Nofile).current, Some(512));
        super::raise_file_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
    }
}
