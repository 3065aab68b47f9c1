//! Who is calling: the API asks an [`Authenticator`] for the request's
//! [`Principal`]. The daemon's authenticator reads a Unix socket's peer
//! credentials or a bearer token; an embedding application brings its own.

use std::any::Any;

use actix_web::{HttpRequest, dev::Extensions, http::header};
use ferry_core::Principal;
use subtle::ConstantTimeEq as _;

/// Why a request has no principal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials (401).
    #[error("credentials required: connect through the Unix socket or send a bearer token")]
    Missing,
    /// Credentials that name nobody (401).
    #[error("unknown token")]
    Invalid,
    /// Known, but not allowed in (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Maps a request to the principal it acts as.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller of `req`.
    fn principal(&self, req: &HttpRequest) -> Result<Principal, AuthError>;

    /// Whether `who` may have a file published at `local` (checked when
    /// files are added). Everywhere, unless the authenticator says otherwise.
    fn may_write(&self, who: &Principal, local: &std::path::Path) -> bool {
        let _ = (who, local);
        true
    }

    /// Whether `who` may set a notify command (a program the engine runs)
    /// on a job of `owner`. Everyone, unless the authenticator says
    /// otherwise.
    fn may_set_notify(&self, who: &Principal, owner: &str) -> bool {
        let _ = (who, owner);
        true
    }
}

impl<F> Authenticator for F
where
    F: Fn(&HttpRequest) -> Result<Principal, AuthError> + Send + Sync + 'static,
{
    fn principal(&self, req: &HttpRequest) -> Result<Principal, AuthError> {
        self(req)
    }
}

/// The peer of a Unix-socket connection, as the kernel reports it
/// (`SO_PEERCRED`): it cannot be forged by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// The peer's user id.
    pub uid: u32,
    /// The peer's primary group id.
    pub gid: u32,
    /// The peer's process id, where known.
    pub pid: Option<i32>,
}

/// For `HttpServer::on_connect`: records a Unix socket peer's credentials in
/// the connection's extensions, where [`peer_cred`] finds them.
pub fn record_peer_cred(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(stream) = conn.downcast_ref::<actix_rt::net::UnixStream>()
        && let Ok(cred) = stream.peer_cred()
    {
        ext.insert(PeerCred {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        });
    }
}

/// The peer credentials of the request's connection, if it came through a
/// Unix socket served with [`record_peer_cred`].
pub fn peer_cred(req: &HttpRequest) -> Option<PeerCred> {
    req.conn_data::<PeerCred>().copied()
}

/// The request's bearer token, if it sent one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Bearer tokens and the principals they stand for, compared in constant
/// time. Its `Debug` never shows a token.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Principal)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Tokens {
    /// No tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token for `principal`.
    pub fn insert(&mut self, token: &str, principal: Principal) {
        self.entries.push((token.as_bytes().to_vec(), principal));
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of `token`. Every entry is compared, in constant time,
    /// so the answer's timing says nothing about which bytes matched.
    pub fn find(&self, token: &str) -> Option<&Principal> {
        let mut found = None;
        for (known, principal) in &self.entries {
            if bool::from(known.as_slice().ct_eq(token.as_bytes())) {
                found = Some(principal);
            }
        }
        found
    }
}
