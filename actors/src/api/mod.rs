//! The HTTP control API (JSON under `/v1`, SSE events, Prometheus metrics),
//! as actix-web services that the `ferry serve` daemon runs and that an actix
//! application can mount in its own server next to its own routes.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use ferry_actors::{Engine, EngineConfig, api::{self, Api}};
//! use ferry_core::Principal;
//!
//! # async fn demo() -> std::io::Result<()> {
//! let engine = Engine::start(EngineConfig::new("/var/lib/myapp/ferry"))
//!     .await
//!     .map_err(std::io::Error::other)?;
//! // Who calls: here every request acts as one application user; a real
//! // application maps its own sessions or tokens to principals.
//! let api = Api::new(engine, |_req: &actix_web::HttpRequest| {
//!     Ok::<_, api::AuthError>(Principal::user("myapp"))
//! });
//! HttpServer::new(move || {
//!     App::new()
//!         .route("/", web::get().to(|| async { "my application" }))
//!         // /v1/..., /metrics and /healthz:
//!         .configure(api.configure())
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await
//! # }
//! ```
//!
//! Every refused request answers `{"error": CODE, "message": ...}` with a
//! fitting status and changes nothing; see `openapi.json` at the repository's
//! top for the whole API.

mod auth;
mod events;
pub mod json;

use std::{path::Path, sync::Arc, time::Duration};

use actix_web::{
    HttpRequest, HttpResponse, ResponseError, Scope,
    error::JsonPayloadError,
    http::{StatusCode, header},
    web::{self, ServiceConfig},
};
use ferry_core::{CommandError, FileSpec, JobId, JobSpec, JobType, Principal, Property};
use serde::Deserialize;

pub use auth::{
    AuthError, Authenticator, PeerCred, Tokens, bearer_token, peer_cred, record_peer_cred,
};
pub use events::EVENT_BUFFER;

use crate::{Engine, EngineError, JobSetup};
use events::EventLog;

/// The largest request body accepted (413 beyond): room for a job's
/// 1,024 files with long URLs.
pub const MAX_BODY: usize = 4 << 20;

/// The API bound to an engine. Cheap to clone: one per server worker.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    auth: Arc<dyn Authenticator>,
    events: Arc<EventLog>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// The API for `engine`, asking `auth` who calls. Starts the event log:
    /// call it on the actix System that runs the server.
    pub fn new(engine: Engine, auth: impl Authenticator) -> Self {
        let events = EventLog::start(&engine);
        Self {
            inner: Arc::new(Inner {
                engine,
                auth: Arc::new(auth),
                events,
            }),
        }
    }

    /// The engine behind the API.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Registers `/v1/...`, `/metrics` and `/healthz`: pass it to
    /// `App::configure`.
    pub fn configure(&self) -> impl FnOnce(&mut ServiceConfig) + Clone + use<> {
        let api = self.clone();
        move |cfg: &mut ServiceConfig| {
            let data = web::Data::new(api.clone());
            cfg.service(api.scope())
                .service(
                    web::resource("/metrics")
                        .app_data(data.clone())
                        .route(web::get().to(metrics))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/healthz")
                        .route(web::get().to(healthz))
                        .default_service(web::to(method_not_allowed)),
                );
        }
    }

    /// The `/v1` scope alone.
    pub fn scope(&self) -> Scope {
        let json = web::JsonConfig::default()
            .limit(MAX_BODY)
            .content_type_required(false)
            .error_handler(|err, _req| {
                let api = match &err {
                    JsonPayloadError::Overflow { .. }
                    | JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the request body is larger than {MAX_BODY} bytes"),
                    ),
                    other => ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("malformed JSON body: {other}"),
                    ),
                };
                api.into()
            });
        let query = web::QueryConfig::default().error_handler(|err, _req| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", err.to_string()).into()
        });
        let resource = |path: &str| {
            web::resource(path.to_owned()).default_service(web::to(method_not_allowed))
        };
        web::scope("/v1")
            .app_data(web::Data::new(self.clone()))
            .app_data(json)
            .app_data(query)
            .service(
                resource("/jobs")
                    .route(web::post().to(create_job))
                    .route(web::get().to(list_jobs)),
            )
            .service(
                resource("/jobs/{id}")
                    .route(web::get().to(get_job))
                    .route(web::patch().to(patch_job)),
            )
            .service(
                resource("/jobs/{id}/files")
                    .route(web::post().to(add_files))
                    .route(web::get().to(list_files)),
            )
            .service(resource("/jobs/{id}/resume").route(web::post().to(resume)))
            .service(resource("/jobs/{id}/suspend").route(web::post().to(suspend)))
            .service(resource("/jobs/{id}/cancel").route(web::post().to(cancel)))
            .service(resource("/jobs/{id}/complete").route(web::post().to(complete)))
            .service(resource("/jobs/{id}/take-ownership").route(web::post().to(take_ownership)))
            .service(resource("/events").route(web::get().to(events)))
            .service(resource("/quotas").route(web::get().to(quotas)))
            .service(
                resource("/limits")
                    .route(web::get().to(limits))
                    .route(web::patch().to(patch_limits)),
            )
            .default_service(web::to(no_route))
    }

    fn caller(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        self.inner.auth.principal(req).map_err(ApiError::from)
    }
}

/// Every route of the API, as `(method, path)`: what `openapi.json`
/// describes (a test holds the two together).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("PATCH", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/files"),
    ("GET", "/v1/jobs/{id}/files"),
    ("POST", "/v1/jobs/{id}/resume"),
    ("POST", "/v1/jobs/{id}/suspend"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("POST", "/v1/jobs/{id}/complete"),
    ("POST", "/v1/jobs/{id}/take-ownership"),
    ("GET", "/v1/events"),
    ("GET", "/v1/quotas"),
    ("GET", "/v1/limits"),
    ("PATCH", "/v1/limits"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
];

/// A refused request: status, code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: json::ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json::ErrorBody {
                error: code.to_owned(),
                message: message.into(),
                files: Vec::new(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.body.error, self.body.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(&self.body)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing | AuthError::Invalid => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthorized", err.to_string())
            }
            AuthError::Forbidden(_) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", err.to_string())
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let status = match &err {
            EngineError::Command(command) => match command {
                CommandError::NotFound => StatusCode::NOT_FOUND,
                CommandError::AccessDenied => StatusCode::FORBIDDEN,
                CommandError::InvalidState(_)
                | CommandError::EmptyJob
                | CommandError::Busy
                | CommandError::RenameFailed(_) => StatusCode::CONFLICT,
                CommandError::StringTooLong { .. }
                | CommandError::InvalidArgument(_)
                | CommandError::InvalidRemoteName { .. }
                | CommandError::InvalidLocalName { .. }
                | CommandError::DuplicateLocalName(_)
                | CommandError::TooManyFiles => StatusCode::BAD_REQUEST,
                CommandError::JobQuota { .. } | CommandError::FileQuota { .. } => {
                    StatusCode::FORBIDDEN
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            EngineError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::DestinationForbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut api = Self::new(status, err.code(), err.to_string());
        if let EngineError::Command(CommandError::RenameFailed(failures)) = &err {
            api.body.files = failures.iter().map(json::Failure::from_core).collect();
        }
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(message = "API request failed.", error = %err);
        }
        api
    }
}

type Answer = Result<HttpResponse, ApiError>;

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_job_id",
            format!("{raw:?} is not a job id (a UUID)"),
        )
    })
}

fn bad_argument(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

async fn job_json(api: &Api, who: &Principal, id: JobId) -> Result<json::Job, ApiError> {
    let (view, files) = api.engine().job_and_files(who, id).await?;
    Ok(json::Job::from_view(&view, Some(&files)))
}

/// `?files=false`: the job document without its `files` (a job of
/// thousands of files is hundreds of kilobytes with them, built and sent
/// for every poll of its progress).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobQuery {
    #[serde(default = "yes")]
    files: bool,
}

const fn yes() -> bool {
    true
}

/// The job document, with its files if `files`.
async fn job_json_with(
    api: &Api,
    who: &Principal,
    id: JobId,
    files: bool,
) -> Result<json::Job, ApiError> {
    if files {
        return job_json(api, who, id).await;
    }
    // Recorded, as the document with files is: a state seen here survives
    // a crash right after.
    let view = api.engine().job_recorded(who, id).await?;
    if view.answer.is_some() {
        // A stored answer names its files from them: a final job, read
        // rarely.
        let mut job = job_json(api, who, id).await?;
        job.files = None;
        return Ok(job);
    }
    Ok(json::Job::from_view(&view, None))
}

async fn create_job(
    api: web::Data<Api>,
    req: HttpRequest,
    query: web::Query<JobQuery>,
    body: web::Json<json::CreateJob>,
) -> Answer {
    let who = api.caller(&req)?;
    let body = body.into_inner();
    let kind = match body.kind.as_deref() {
        None => JobType::Download,
        Some(name) => json::parse_job_type(name)
            .ok_or_else(|| bad_argument(format!("unknown job type {name:?}")))?,
    };
    if kind.is_upload() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported",
            "upload jobs are not supported yet",
        ));
    }
    let priority = match body.priority.as_deref() {
        None => ferry_core::Priority::Normal,
        Some(name) => json::parse_priority(name)
            .ok_or_else(|| bad_argument(format!("unknown priority {name:?}")))?,
    };
    let spec = JobSpec {
        name: body.name,
        kind,
        priority,
        description: body.description.unwrap_or_default(),
    };
    // Created with its files, properties and resume: all or nothing.
    let properties = match body.properties {
        Some(patch) => {
            let sets_notify = matches!(patch.notify_command, Some(Some(_)));
            let properties = properties_of(patch)?;
            if properties.is_empty() {
                return Err(bad_argument("no properties given"));
            }
            if sets_notify {
                may_set_notify(&api, &who, &who.user)?;
            }
            properties
        }
        None => Vec::new(),
    };
    let files = match body.files {
        None => Vec::new(),
        Some(files) => file_specs(&api, &who, file_list(files)?).await?,
    };
    let setup = JobSetup {
        files,
        properties,
        resume: body.resume,
    };
    let id = api.engine().create_job_with(&who, spec, setup).await?;
    let job = job_json_with(&api, &who, id, query.files).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/jobs/{id}")))
        .json(job))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list_jobs(api: web::Data<Api>, req: HttpRequest, query: web::Query<ListQuery>) -> Answer {
    let who = api.caller(&req)?;
    let views = api.engine().list(&who, query.all).await?;
    let jobs = views
        .iter()
        .map(|v| json::Job::from_view(v, None))
        .collect();
    Ok(HttpResponse::Ok().json(json::JobList { jobs }))
}

async fn get_job(
    api: web::Data<Api>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<JobQuery>,
) -> Answer {
    let who = api.caller(&req)?;
    let id = job_id(&id)?;
    Ok(HttpResponse::Ok().json(job_json_with(&api, &who, id, query.files).await?))
}

fn seconds(field: &str, secs: u64) -> Result<Duration, ApiError> {
    // The core caps settings at 100 years; refuse what is plainly nonsense.
    const MAX: u64 = 100 * 366 * 24 * 3600;
    if secs > MAX {
        return Err(bad_argument(format!("{field} is more than 100 years")));
    }
    Ok(Duration::from_secs(secs))
}

async fn patch_job(
    api: web::Data<Api>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<json::PatchJob>,
) -> Answer {
    let who = api.caller(&req)?;
    let id = job_id(&id)?;
    let patch = body.into_inner();
    let sets_notify = matches!(patch.notify_command, Some(Some(_)));
    let properties = properties_of(patch)?;
    if properties.is_empty() {
        return Err(bad_argument("nothing to change"));
    }
    if sets_notify {
        let owner = api.engine().job(&who, id).await?.owner;
        may_set_notify(&api, &who, &owner)?;
    }
    api.engine().set_all(&who, id, properties).await?;
    Ok(HttpResponse::Ok().json(job_json(&api, &who, id).await?))
}

/// Whether `who` may give a job of `owner` a notify command.
fn may_set_notify(api: &Api, who: &Principal, owner: &str) -> Result<(), ApiError> {
    if api.inner.auth.may_set_notify(who, owner) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this caller may not set a notify command",
        ))
    }
}

/// The properties a `PatchJob` sets, each checked (who may set a notify
/// command is the caller's to check).
fn properties_of(patch: json::PatchJob) -> Result<Vec<Property>, ApiError> {
    let mut properties = Vec::new();
    if let Some(name) = patch.name {
        properties.push(Property::DisplayName(name));
    }
    if let Some(text) = patch.description {
        properties.push(Property::Description(text));
    }
    if let Some(name) = patch.priority {
        let priority = json::parse_priority(&name)
            .ok_or_else(|| bad_argument(format!("unknown priority {name:?}")))?;
        properties.push(Property::Priority(priority));
    }
    if let Some(secs) = patch.min_retry_delay_secs {
        properties.push(Property::MinRetryDelay(seconds(
            "min_retry_delay_secs",
            secs,
        )?));
    }
    if let Some(secs) = patch.no_progress_timeout_secs {
        properties.push(Property::NoProgressTimeout(seconds(
            "no_progress_timeout_secs",
            secs,
        )?));
    }
    if let Some(secs) = patch.max_download_time_secs {
        properties.push(Property::MaxDownloadTime(seconds(
            "max_download_time_secs",
            secs,
        )?));
    }
    if let Some(n) = patch.parallel_files {
        properties.push(Property::ParallelFiles(n));
    }
    if let Some(cap) = patch.max_bytes_per_second {
        properties.push(Property::MaxBytesPerSecond(cap));
    }
    if let Some(notify) = patch.notify_command {
        properties.push(Property::NotifyCommand(
            notify.as_ref().map(json::Notify::to_core),
        ));
    }
    Ok(properties)
}

/// The files of a request as a list: one at least.
fn file_list(files: json::AddFiles) -> Result<Vec<json::AddFile>, ApiError> {
    let files = match files {
        json::AddFiles::One(file) => vec![file],
        json::AddFiles::Many(files) => files,
    };
    if files.is_empty() {
        return Err(bad_argument("no files given"));
    }
    Ok(files)
}

/// The files of a request, with their destinations checked against what
/// `who` may write.
async fn file_specs(
    api: &Api,
    who: &Principal,
    files: Vec<json::AddFile>,
) -> Result<Vec<FileSpec>, ApiError> {
    // The authenticator may look at the filesystem: off the arbiter.
    let (auth, caller) = (api.inner.auth.clone(), who.clone());
    let locals: Vec<String> = files.iter().map(|f| f.local.clone()).collect();
    let refused = web::block(move || {
        locals
            .into_iter()
            .find(|local| !auth.may_write(&caller, Path::new(local)))
    })
    .await
    .map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "io",
            format!("destination check failed: {err}"),
        )
    })?;
    if let Some(local) = refused {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "destination_forbidden",
            format!("{local} is outside the destinations this caller may write"),
        ));
    }
    Ok(files
        .into_iter()
        .map(|f| FileSpec::new(f.remote, f.local))
        .collect())
}

async fn add_files(
    api: web::Data<Api>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<json::AddFiles>,
) -> Answer {
    let who = api.caller(&req)?;
    let id = job_id(&id)?;
    let specs = file_specs(&api, &who, file_list(body.into_inner())?).await?;
    let ids = api.engine().add_files(&who, id, specs).await?;
    // A set: a list's `contains` made adding n files to a job cost n
    // times its file count.
    let ids: std::collections::HashSet<_> = ids.into_iter().collect();
    let all = api.engine().files(&who, id).await?;
    let files = all
        .iter()
        .filter(|f| ids.contains(&f.id))
        .map(json::File::from_core)
        .collect();
    Ok(HttpResponse::Created().json(json::FileList { files }))
}

async fn list_files(api: web::Data<Api>, req: HttpRequest, id: web::Path<String>) -> Answer {
    let who = api.caller(&req)?;
    let id = job_id(&id)?;
    let files = api.engine().files(&who, id).await?;
    let files = files.iter().map(json::File::from_core).collect();
    Ok(HttpResponse::Ok().json(json::FileList { files }))
}

/// A command whose answer is the job afterwards.
async fn job_command(
    api: &Api,
    req: &HttpRequest,
    id: &str,
    command: impl AsyncFnOnce(&Engine, &Principal, JobId) -> Result<(), EngineError>,
) -> Answer {
    let who = api.caller(req)?;
    let id = job_id(id)?;
    command(api.engine(), &who, id).await?;
    Ok(HttpResponse::Ok().json(job_json(api, &who, id).await?))
}

async fn resume(api: web::Data<Api>, req: HttpRequest, id: web::Path<String>) -> Answer {
    job_command(&api, &req, &id, async |e, who, id| e.resume(who, id).await).await
}

async fn suspend(api: web::Data<Api>, req: HttpRequest, id: web::Path<String>) -> Answer {
    job_command(&api, &req, &id, async |e, who, id| e.suspend(who, id).await).await
}

async fn take_ownership(api: web::Data<Api>, req: HttpRequest, id: web::Path<String>) -> Answer {
    job_command(&api, &req, &id, async |e, who, id| {
        e.take_ownership(who, id).await
    })
    .await
}

async fn cancel(api: web::Data<Api>, req: HttpRequest, id: web::Path<String>) -> Answer {
    let who = api.caller(&req)?;
    let id = job_id(&id)?;
    let answer = api.engine().cancel(&who, id).await?;
    Ok(HttpResponse::Ok().json(json::CancelResult::from_core(&answer)))
}

async fn complete(api: web::Data<Api>, req: HttpRequest, id: web::Path<String>) -> Answer {
    let who = api.caller(&req)?;
    let id = job_id(&id)?;
    let answer = api.engine().complete(&who, id).await?;
    // The job is final now but kept for the retention period: its files'
    // names are still there to put in the answer.
    let files = api.engine().files(&who, id).await.unwrap_or_default();
    Ok(HttpResponse::Ok().json(json::CompleteResult::from_core(&answer, &files)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    job: Option<String>,
    /// Comma-separated event types (all if absent).
    types: Option<String>,
}

async fn events(api: web::Data<Api>, req: HttpRequest, query: web::Query<EventsQuery>) -> Answer {
    let who = api.caller(&req)?;
    let job = query.job.as_deref().map(job_id).transpose()?;
    let types = match query.types.as_deref() {
        None => events::Types::default(),
        Some(list) => events::Types::parse(list).map_err(|unknown| {
            let what = if unknown.is_empty() {
                "no event type".to_owned()
            } else {
                format!("unknown event type {unknown:?}")
            };
            bad_argument(format!(
                "{what} (job_transferred, job_error, job_modified, file_transferred)"
            ))
        })?,
    };
    if let Some(job) = job {
        // Unknown or foreign jobs: 404, as everywhere.
        api.engine().job(&who, job).await?;
    }
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = events::stream(
        api.inner.events.clone(),
        api.engine().clone(),
        who,
        job,
        types,
        last,
    )
    .await;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

async fn metrics(api: web::Data<Api>, req: HttpRequest) -> Answer {
    api.caller(&req)?;
    let text = api.engine().metrics_text().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

async fn quotas(api: web::Data<Api>, req: HttpRequest) -> Answer {
    let who = api.caller(&req)?;
    let quotas = api.engine().quotas(&who).await?;
    Ok(HttpResponse::Ok().json(json::Quotas::from_engine(&quotas)))
}

async fn limits(api: web::Data<Api>, req: HttpRequest) -> Answer {
    api.caller(&req)?;
    let (limits, now) = api.engine().limits_now().await?;
    Ok(HttpResponse::Ok().json(json::Limits::from_engine(&limits, &now)))
}

/// Changes the engine's limits at runtime: admins only.
async fn patch_limits(
    api: web::Data<Api>,
    req: HttpRequest,
    body: web::Json<json::PatchLimits>,
) -> Answer {
    let who = api.caller(&req)?;
    if !who.admin {
        return Err(EngineError::Command(CommandError::AccessDenied).into());
    }
    let patch = body.into_inner();
    let mut limits = api.engine().limits().await?;
    if let Some(n) = patch.max_transfers {
        limits.max_transfers = n;
    }
    if let Some(n) = patch.max_transfers_per_host {
        limits.max_transfers_per_host = n;
    }
    if let Some(cap) = patch.max_bytes_per_second {
        limits.max_bytes_per_second = cap;
    }
    if let Some(secs) = patch.time_slice_secs {
        limits.time_slice = std::time::Duration::from_secs(secs);
    }
    if let Some(windows) = patch.bandwidth_schedule {
        limits.bandwidth_schedule = windows
            .iter()
            .map(|w| {
                w.parse()
                    .map_err(|e: ferry_core::window::WindowError| bad_argument(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
    }
    api.engine().set_limits(limits).await?;
    let (limits, now) = api.engine().limits_now().await?;
    Ok(HttpResponse::Ok().json(json::Limits::from_engine(&limits, &now)))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn no_route(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no such API route: {} {}", req.method(), req.path()),
    )
    .error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .error_response()
}
