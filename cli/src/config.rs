//! The daemon's settings: defaults, then the TOML file (`--config`), then
//! environment variables and flags (clap gives both), each overriding the
//! one before.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Where and how `ferry serve` runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// System mode: a socket any local user may use, callers told apart by
    /// their peer credentials.
    pub system: bool,
    /// The RocksDB store and the generated token.
    pub data_dir: PathBuf,
    /// The Unix socket.
    pub socket: PathBuf,
    /// An optional TCP listener (`HOST:PORT`), bearer tokens required.
    pub listen: Option<String>,
    /// Members of this group are admins (system mode); root always is.
    pub admin_group: Option<String>,
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// Transfers at once across background jobs.
    pub max_transfers: usize,
    /// Transfers at once to one host.
    pub max_transfers_per_host: usize,
    /// Seconds to connect and receive a response head.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the next body chunk.
    pub idle_timeout_secs: u64,
    /// The lowest minimum retry delay a job may set, in seconds (BITS: 5).
    pub retry_delay_floor_secs: u64,
    /// Background jobs of one priority take turns in slices of this many
    /// seconds (a lower priority gives way at once).
    pub time_slice_secs: u64,
    /// Bytes per second over all transfers (none: no cap); admins change
    /// it at runtime with `PATCH /v1/limits`.
    pub max_bytes_per_second: Option<u64>,
    /// Bandwidth windows by time of day and weekday, local time, the first
    /// in force applying: `["mon-fri 08:00-18:00 1000000", "all
    /// 22:00-06:00 pause"]` (a cap, `none`, or `pause` of background jobs).
    pub bandwidth_schedule: Vec<String>,
    /// Unfinished jobs an owner who is not an admin may have.
    pub max_jobs_per_owner: usize,
    /// Files a job of an owner who is not an admin may hold.
    pub max_files_per_job: usize,
    /// BITS's quotas instead of the two above: 60 jobs per owner, 200 files
    /// per job (admins exempt).
    pub bits_quotas: bool,
    /// Small files transferred at once on one filesystem from which one
    /// syncfs makes them durable instead of an fdatasync each (a group
    /// commit; ext4, XFS and btrfs on Linux 5.17 or later only); 0: never,
    /// for a filesystem shared with programs whose dirty data a syncfs
    /// should not write back early.
    pub syncfs_batch: usize,
    /// PEM files of root certificates trusted for https besides the bundled
    /// web PKI roots: a private or corporate CA, or the system's bundle
    /// (`/etc/ssl/certs/ca-certificates.crt` on Debian).
    pub tls_roots: Vec<PathBuf>,
    /// Whether the bundled web PKI roots are trusted too (default true);
    /// false: only `tls_roots` (which must then name some).
    pub tls_web_roots: bool,
    /// Extra bearer tokens for the TCP listener.
    pub tokens: Vec<TokenConfig>,
}

/// One bearer token and what it may do.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret.
    pub token: String,
    /// The principal it stands for.
    pub user: String,
    /// System mode: the uid whose rights its jobs' file operations and
    /// notify commands use. Default: the system user named `user` (a token
    /// whose user is no system user needs it). A user-mode daemon acts only
    /// as its own user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Whether it is an admin.
    #[serde(default)]
    pub admin: bool,
    /// Directories it may have files published under; empty: anywhere.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("user", &self.user)
            .field("uid", &self.uid)
            .field("admin", &self.admin)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The user's data directory (`$XDG_DATA_HOME/ferry`, else
/// `~/.local/share/ferry`).
pub fn user_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("ferry");
    }
    home().join(".local/share/ferry")
}

/// The user's socket (`$XDG_RUNTIME_DIR/ferry.sock`, else in the data dir).
pub fn user_socket(data_dir: &Path) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("ferry.sock"),
        None => data_dir.join("ferry.sock"),
    }
}

/// The system daemon's socket.
pub const SYSTEM_SOCKET: &str = "/run/ferry/ferry.sock";
/// The system daemon's data directory.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/ferry";

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

impl Default for ServeConfig {
    fn default() -> Self {
        let data_dir = user_data_dir();
        Self {
            system: false,
            socket: user_socket(&data_dir),
            data_dir,
            listen: None,
            admin_group: None,
            log_format: LogFormat::Human,
            max_transfers: 8,
            max_transfers_per_host: 8,
            connect_timeout_secs: 30,
            idle_timeout_secs: 60,
            retry_delay_floor_secs: 5,
            time_slice_secs: 60,
            max_bytes_per_second: None,
            bandwidth_schedule: Vec::new(),
            max_jobs_per_owner: ferry_core::config::DEFAULT_MAX_JOBS_PER_OWNER,
            max_files_per_job: ferry_core::config::DEFAULT_MAX_FILES_PER_JOB,
            bits_quotas: false,
            syncfs_batch: ferry_actors::EngineConfig::new("").syncfs_batch,
            tls_roots: Vec::new(),
            tls_web_roots: true,
            tokens: Vec::new(),
        }
    }
}

/// A config file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML of the expected shape. The message never quotes the
    /// file (it may hold tokens).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why, and where (line).
        message: String,
    },
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl ServeConfig {
    /// The defaults for the mode.
    pub fn defaults(system: bool) -> Self {
        let mut config = Self::default();
        if system {
            config.system = true;
            config.data_dir = PathBuf::from(SYSTEM_DATA_DIR);
            config.socket = PathBuf::from(SYSTEM_SOCKET);
        }
        config
    }

    /// Reads a TOML file over the defaults of its mode (a file may set
    /// `system = true`; paths it does not set follow the mode).
    pub fn from_file(path: &Path, system_flag: bool) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse_error = |err: toml::de::Error| {
            let line = err.span().map(|span| {
                text.get(..span.start)
                    .map_or(0, |t| t.lines().count().max(1))
            });
            ConfigError::Parse {
                path: path.to_owned(),
                message: match line {
                    Some(line) => format!("line {line}: {}", err.message()),
                    None => err.message().to_owned(),
                },
            }
        };
        let table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
        let system = system_flag
            || table
                .get("system")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
        // Merge the file over the mode's defaults, key by key.
        let Ok(toml::Value::Table(mut merged)) = toml::Value::try_from(Self::defaults(system))
        else {
            return Err(ConfigError::Invalid("the defaults do not serialize".into()));
        };
        merged.extend(table);
        merged.insert("system".into(), toml::Value::Boolean(system));
        toml::Value::Table(merged).try_into().map_err(parse_error)
    }

    /// Checks values that would fail later in less clear ways.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.time_slice_secs == 0 {
            return Err(ConfigError::Invalid(
                "time_slice_secs must be at least 1".into(),
            ));
        }
        if self.max_bytes_per_second == Some(0) {
            return Err(ConfigError::Invalid(
                "max_bytes_per_second must be at least 1 (leave it out for no cap)".into(),
            ));
        }
        for window in &self.bandwidth_schedule {
            window
                .parse::<ferry_core::window::Window>()
                .map_err(|e| ConfigError::Invalid(format!("bandwidth_schedule: {e}")))?;
        }
        if !self.tls_web_roots && self.tls_roots.is_empty() {
            return Err(ConfigError::Invalid(
                "tls_web_roots = false needs tls_roots: https would trust no server".into(),
            ));
        }
        if self.max_transfers == 0 || self.max_transfers_per_host == 0 {
            return Err(ConfigError::Invalid(
                "max_transfers and max_transfers_per_host must be at least 1".into(),
            ));
        }
        if !self.data_dir.is_absolute() || !self.socket.is_absolute() {
            return Err(ConfigError::Invalid(
                "data_dir and socket must be absolute paths".into(),
            ));
        }
        let mut users: Vec<&str> = self.tokens.iter().map(|t| t.user.as_str()).collect();
        users.sort_unstable();
        if let Some(pair) = users.windows(2).find(|w| w.first() == w.get(1)) {
            return Err(ConfigError::Invalid(format!(
                "two tokens for user {:?}: give each token its own user",
                pair.first().copied().unwrap_or_default()
            )));
        }
        if let Some(t) = self
            .tokens
            .iter()
            .find(|t| t.user.is_empty() || t.user.starts_with("uid:"))
        {
            return Err(ConfigError::Invalid(format!(
                "token user {:?}: give a name (uids go in `uid`)",
                t.user
            )));
        }
        if let Some(t) = self.tokens.iter().find(|t| t.token.len() < 16) {
            return Err(ConfigError::Invalid(format!(
                "the token of {:?} is shorter than 16 characters",
                t.user
            )));
        }
        Ok(())
    }

    /// The effective settings as TOML, tokens hidden.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for token in &mut shown.tokens {
            token.token = "<hidden>".into();
        }
        toml::to_string(&shown).unwrap_or_default()
    }

    /// The certificates of `tls_roots` (DER), read now: a file that cannot
    /// be read, holds no certificate, or one that is not a usable trust
    /// anchor (bad PEM, or not X.509) is an error naming it, so a daemon
    /// never starts without a root it was given.
    pub fn read_tls_roots(&self) -> Result<Vec<Vec<u8>>, ConfigError> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = Vec::new();
        for path in &self.tls_roots {
            let invalid = |what: String| {
                ConfigError::Invalid(format!("tls_roots: {}: {what}", path.display()))
            };
            let before = roots.len();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))?;
            for (n, cert) in certs.enumerate() {
                let cert = cert.map_err(|e| invalid(e.to_string()))?;
                rustls::RootCertStore::empty()
                    .add(cert.clone())
                    .map_err(|e| invalid(format!("certificate {}: {e}", n + 1)))?;
                roots.push(cert.as_ref().to_vec());
            }
            if roots.len() == before {
                return Err(ConfigError::Invalid(format!(
                    "tls_roots: {}: no PEM certificate in it",
                    path.display()
                )));
            }
        }
        Ok(roots)
    }

    /// The engine's settings (`tls_roots` aside: `read_tls_roots`).
    pub fn engine(&self) -> ferry_actors::EngineConfig {
        let mut engine = ferry_actors::EngineConfig::new(self.data_dir.join("store"));
        engine.max_transfers = self.max_transfers;
        engine.max_transfers_per_host = self.max_transfers_per_host;
        engine.connect_timeout = Duration::from_secs(self.connect_timeout_secs);
        engine.idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        engine.core.retry_delay_floor = Duration::from_secs(self.retry_delay_floor_secs);
        engine.max_bytes_per_second = self.max_bytes_per_second;
        engine.time_slice = Duration::from_secs(self.time_slice_secs);
        // Checked by `validate`.
        engine.bandwidth_schedule = self
            .bandwidth_schedule
            .iter()
            .filter_map(|w| w.parse().ok())
            .collect();
        engine.max_jobs_per_owner = self.max_jobs_per_owner;
        engine.core.max_files_per_job = self.max_files_per_job;
        if self.bits_quotas {
            engine.bits_quotas();
        }
        engine.syncfs_batch = self.syncfs_batch;
        engine.tls_web_roots = self.tls_web_roots;
        engine
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quotas_default_to_ferrys_values_and_bits_quotas_restores_bitss() {
        let config = ServeConfig::default();
        let engine = config.engine();
        assert_eq!(
            (engine.max_jobs_per_owner, engine.core.max_files_per_job),
            (10_000, 100_000)
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ferry.toml");
        std::fs::write(&file, "max_jobs_per_owner = 5\nmax_files_per_job = 7\n").unwrap();
        let engine = ServeConfig::from_file(&file, false).unwrap().engine();
        assert_eq!(
            (engine.max_jobs_per_owner, engine.core.max_files_per_job),
            (5, 7)
        );
        std::fs::write(&file, "time_slice_secs = 5\n").unwrap();
        let engine = ServeConfig::from_file(&file, false).unwrap().engine();
        assert_eq!(engine.time_slice, Duration::from_secs(5));
        assert_eq!(
            ServeConfig::default().engine().time_slice,
            Duration::from_secs(60)
        );
        std::fs::write(&file, "bits_quotas = true\n").unwrap();
        let engine = ServeConfig::from_file(&file, false).unwrap().engine();
        assert_eq!(
            (engine.max_jobs_per_owner, engine.core.max_files_per_job),
            (60, 200)
        );
    }

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(
            &path,
            "max_transfers = 3\n[[tokens]]\ntoken = \"0123456789abcdef\"\nuser = \"ci\"\nroots = [\"/srv\"]\n",
        )
        .unwrap();
        let config = ServeConfig::from_file(&path, false).unwrap();
        assert_eq!(config.max_transfers, 3);
        assert_eq!(config.max_transfers_per_host, 8);
        assert_eq!(config.engine().syncfs_batch, 8);
        assert_eq!(config.tokens.len(), 1);
        assert!(!config.to_toml().contains("0123456789abcdef"));
        let system = ServeConfig::from_file(&path, true).unwrap();
        assert_eq!(system.socket, PathBuf::from(SYSTEM_SOCKET));
        std::fs::write(&path, "syncfs_batch = 0\n").unwrap();
        let never = ServeConfig::from_file(&path, false).unwrap();
        assert_eq!(never.engine().syncfs_batch, 0);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, "max_transfer = 3\n").unwrap();
        let err = ServeConfig::from_file(&path, false).unwrap_err();
        assert!(err.to_string().contains("max_transfer"), "{err}");
        std::fs::write(
            &path,
            "[[tokens]]\ntoken = \"secret-secret-secret\nuser = \"x\"\n",
        )
        .unwrap();
        let err = ServeConfig::from_file(&path, false).unwrap_err();
        assert!(!err.to_string().contains("secret-secret"), "{err}");
        std::fs::write(&path, "max_transfers = 0\n").unwrap();
        let config = ServeConfig::from_file(&path, false).unwrap();
        assert!(config.validate().is_err());
        std::fs::write(
            &path,
            "bandwidth_schedule = [\"mon-fri 08:00-18:00 1000000\", \"all 22:00-06:00 pause\"]\n",
        )
        .unwrap();
        let config = ServeConfig::from_file(&path, false).unwrap();
        config.validate().unwrap();
        let windows = config.engine().bandwidth_schedule;
        assert_eq!(windows.len(), 2);
        assert_eq!(windows.get(1).unwrap().to_string(), "all 22:00-06:00 pause");
        std::fs::write(&path, "bandwidth_schedule = [\"mon 08:00-18:00\"]\n").unwrap();
        let err = ServeConfig::from_file(&path, false)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("bandwidth_schedule"), "{err}");
    }

    #[test]
    fn tls_roots_are_read_from_pem_bundles_and_unusable_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_owned()]).unwrap();
        let bundle = dir.path().join("bundle.pem");
        let pem = |der: &[u8]| {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n")
        };
        std::fs::write(
            &bundle,
            format!("{}\n{}", pem(a.cert.der()), pem(b.cert.der())),
        )
        .unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, format!("tls_roots = [{:?}]\n", bundle.display())).unwrap();
        let config = ServeConfig::from_file(&path, false).unwrap();
        assert_eq!(
            config.read_tls_roots().unwrap(),
            vec![a.cert.der().to_vec(), b.cert.der().to_vec()]
        );
        assert!(ServeConfig::default().read_tls_roots().unwrap().is_empty());

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let mut config = ServeConfig {
            tls_roots: vec![bundle, empty],
            ..ServeConfig::default()
        };
        let err = config.read_tls_roots().unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        // Well-formed PEM whose bytes are no X.509 certificate.
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, pem(b"not a certificate")).unwrap();
        config.tls_roots = vec![junk];
        let err = config.read_tls_roots().unwrap_err().to_string();
        assert!(err.contains("junk.pem: certificate 1"), "{err}");
        config.tls_roots = vec![dir.path().join("absent.pem")];
        let err = config.read_tls_roots().unwrap_err().to_string();
        assert!(err.contains("absent.pem"), "{err}");

        // Only the given roots: some must be given.
        std::fs::write(&path, "tls_web_roots = false\n").unwrap();
        let only = ServeConfig::from_file(&path, false).unwrap();
        let err = only.validate().unwrap_err().to_string();
        assert!(err.contains("tls_web_roots"), "{err}");
        std::fs::write(
            &path,
            format!(
                "tls_web_roots = false\ntls_roots = [{:?}]\n",
                dir.path().join("bundle.pem").display()
            ),
        )
        .unwrap();
        let only = ServeConfig::from_file(&path, false).unwrap();
        only.validate().unwrap();
        assert!(!only.engine().tls_web_roots);
        assert!(ServeConfig::default().engine().tls_web_roots);
    }
}
