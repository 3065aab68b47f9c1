//! The API's client: awc over the daemon's Unix socket (or TCP with a
//! bearer token), answers as the API's own JSON types.

use std::{path::PathBuf, time::Duration};

use actix_rt::net::UnixStream;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::{Client as Http, Connector, http::Method};
use ferry_actors::api::json;
use serde::{Serialize, de::DeserializeOwned};

/// Where the daemon is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP base URL (`http://host:port`).
    Http(String),
}

impl Address {
    /// Parses `unix:PATH` or `http://HOST:PORT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Self::Http(text.trim_end_matches('/').to_owned()));
        }
        Err(format!(
            "FERRY_ADDR {text:?} is neither unix:PATH nor http://HOST:PORT"
        ))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Http(url) => f.write_str(url),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers at the address.
    #[error("no ferry daemon at {address} ({cause}); start one with `ferry serve`")]
    Unreachable {
        /// Where we looked.
        address: Address,
        /// What the connection said.
        cause: String,
    },
    /// The daemon refused the request.
    #[error("{}: {}", .body.error, .body.message)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error document.
        body: json::ErrorBody,
    },
    /// Bad input, refused before asking the daemon.
    #[error("{0}")]
    Input(String),
    /// The answer was not what the API promises.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The API error code, if the daemon refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { body, .. } => Some(&body.error),
            _ => None,
        }
    }
}

/// A connection to the daemon.
#[derive(Clone)]
pub struct Client {
    http: Http,
    base: String,
    address: Address,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the daemon at `address` (must run on an actix System).
    pub fn new(address: Address, token: Option<String>) -> Self {
        let timeout = Duration::from_secs(120);
        let (http, base) = match &address {
            Address::Unix(path) => {
                let path = path.clone();
                let connector = Connector::new().timeout(Duration::from_secs(5)).connector(
                    actix_service::fn_service(move |req: ConnectInfo<awc::http::Uri>| {
                        let path = path.clone();
                        async move {
                            let io = UnixStream::connect(&path).await.map_err(ConnectError::Io)?;
                            Ok::<_, ConnectError>(Connection::new(req.request().clone(), io))
                        }
                    }),
                );
                (
                    Http::builder()
                        .connector(connector)
                        .timeout(timeout)
                        .finish(),
                    "http://localhost".to_owned(),
                )
            }
            Address::Http(url) => (Http::builder().timeout(timeout).finish(), url.clone()),
        };
        Self {
            http,
            base,
            address,
            token,
        }
    }

    /// Where it connects.
    pub fn address(&self) -> &Address {
        &self.address
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let sent = match body {
            Some(body) => req.send_json(body).await,
            None => req.send().await,
        };
        let mut res = sent.map_err(|err| ClientError::Unreachable {
            address: self.address.clone(),
            cause: err.to_string(),
        })?;
        let bytes = res
            .body()
            .limit(256 << 20)
            .await
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        let status = res.status();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|err| {
                ClientError::Protocol(format!("{err}: {}", String::from_utf8_lossy(&bytes)))
            });
        }
        match serde_json::from_slice::<json::ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                body,
            }),
            Err(_) => Err(ClientError::Protocol(format!(
                "{status}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }

    /// `GET path` as any JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// The job-level event stream of one job (`GET
    /// /v1/events?job=ID&types=job_transferred,job_error`), to wait on
    /// instead of polling (not woken once per file of the job).
    pub async fn events(&self, id: &str) -> Result<Events, ClientError> {
        let mut req = self.http.get(format!(
            "{}/v1/events?job={}&types=job_transferred,job_error",
            self.base,
            encode(id)?
        ));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.map_err(|err| ClientError::Unreachable {
            address: self.address.clone(),
            cause: err.to_string(),
        })?;
        if !res.status().is_success() {
            return Err(ClientError::Protocol(format!("events: {}", res.status())));
        }
        Ok(Events {
            body: Box::pin(res),
            buf: Vec::new(),
        })
    }

    /// `GET path` as text (`/metrics`).
    pub async fn text(&self, path: &str) -> Result<String, ClientError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let mut res = req.send().await.map_err(|err| ClientError::Unreachable {
            address: self.address.clone(),
            cause: err.to_string(),
        })?;
        let bytes = res
            .body()
            .limit(64 << 20)
            .await
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if res.status().is_success() {
            Ok(text)
        } else {
            Err(ClientError::Protocol(format!("{}: {text}", res.status())))
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// A job with its files.
    pub async fn job(&self, id: &str) -> Result<json::Job, ClientError> {
        self.get(&Self::job_path(id, "")?).await
    }

    /// The job without its files (`?files=false`): for polls of its
    /// state and progress, which a job of thousands of files would make
    /// hundreds of kilobytes each.
    pub async fn job_summary(&self, id: &str) -> Result<json::Job, ClientError> {
        self.get(&format!("{}?files=false", Self::job_path(id, "")?))
            .await
    }

    /// `/v1/jobs/{id}` plus `suffix`, the id checked.
    pub fn job_path(id: &str, suffix: &str) -> Result<String, ClientError> {
        Ok(format!("/v1/jobs/{}{suffix}", encode(id)?))
    }

    /// A command on a job (`resume`, `suspend`, ...).
    pub async fn action<T: DeserializeOwned>(
        &self,
        id: &str,
        action: &str,
    ) -> Result<T, ClientError> {
        self.post(
            &Self::job_path(id, &format!("/{action}"))?,
            &serde_json::json!({}),
        )
        .await
    }
}

/// A Server-Sent Events stream: the names of its events, in order.
pub struct Events {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>>,
    >,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    #[cfg(test)]
    fn of(chunks: Vec<&'static [u8]>) -> Self {
        let chunks = chunks.into_iter().map(|c| Ok(bytes::Bytes::from_static(c)));
        Self {
            body: Box::pin(futures_util::stream::iter(chunks)),
            buf: Vec::new(),
        }
    }

    /// The next event's name (`job_transferred`, `job_modified`, ...);
    /// `None` once the stream ends. Cancel-safe: bytes read stay buffered.
    pub async fn next(&mut self) -> Option<String> {
        use futures_util::StreamExt as _;
        loop {
            // An event ends with a blank line.
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let name = text
                    .lines()
                    .find_map(|line| line.strip_prefix("event:"))
                    .map(|name| name.trim().to_owned());
                match name {
                    Some(name) => return Some(name),
                    None => continue, // a comment or keep-alive
                }
            }
            match self.body.next().await? {
                Ok(chunk) => self.buf.extend_from_slice(&chunk),
                Err(_) => return None,
            }
        }
    }
}

/// A job id checked before it goes into a path.
fn encode(id: &str) -> Result<String, ClientError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| ClientError::Input(format!("{id:?} is not a job id (a UUID)")))
}

#[cfg(test)]
mod tests {
    use super::Events;

    #[actix_rt::test]
    async fn events_are_read_across_chunk_boundaries_and_keep_alives_skipped() {
        let mut events = Events::of(vec![
            b": keep-alive\n\n",
            b"event: job_modi",
            b"fied\nid: RUN-1\ndata: {}\n",
            b"\nevent: file_transferred\ndata: {}\n\nevent: job_trans",
            b"ferred\ndata: {}\n\n",
            b"event: half",
        ]);
        assert_eq!(events.next().await.as_deref(), Some("job_modified"));
        assert_eq!(events.next().await.as_deref(), Some("file_transferred"));
        assert_eq!(events.next().await.as_deref(), Some("job_transferred"));
        // A stream that ends mid-event ends the events.
        assert_eq!(events.next().await, None);
    }
}
