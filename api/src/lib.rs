//! The REST API and live stream for fleet apps (contract 3).
//!
//! - [`auth`]: bearer tokens, roles, passwords, the authentication cache, the login limit.
//! - [`resources`]: devices, groups, drivers, users, API keys, login and logout.
//! - [`live`]: live state from Redis and the Server-Sent Events stream from NATS.
//! - [`history`]: positions (JSON and GeoJSON, streamed) and events.
//! - [`commands`]: commands queued for the gateway and their answers.
//! - [`reports`]: trips, stops and summaries (the rules of `fleetgate_rules`, over what
//!   `fleetgate_store::segments` reads), and background report jobs.
//! - [`exports`]: tracks as GPX, KML and CSV.
//! - [`traffic`]: a device's archived frames.
//! - [`cache`]: the one expiring cache behind tokens, device metadata and `/v1/live`.
//! - [`error`]: the one error type, with its status code.
//!
//! It meets the other roles only through `fleetgate_contracts` (subjects, messages, Redis
//! keys) and `fleetgate_store` (the Postgres formats): it never depends on the gateway or
//! the processor. Every query names the caller's tenant in its `WHERE` clause, so
//! another tenant's object is simply not found (404). The OpenAPI document is generated
//! from the handlers' annotations by the same router that serves them.

pub mod auth;
pub mod cache;
pub mod commands;
pub mod error;
pub mod exports;
pub mod history;
pub mod live;
pub mod reports;
pub mod resources;
pub mod traffic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use fleetgate_contracts::{Config, TenantId};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthCache, LoginLimiter};
use crate::error::ApiError;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    requests: [AtomicU64; 5],
    db_reads: AtomicU64,
    cache_hits: AtomicU64,
}

impl ApiMetrics {
    /// Counts a database read that the caches could not save.
    pub fn count_db_read(&self) {
        self.db_reads.fetch_add(1, Relaxed);
    }

    /// Counts a read served from a cache.
    pub fn count_cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    fn count_response(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.requests[class].fetch_add(1, Relaxed);
    }

    /// Reads served from caches and reads that went to Postgres.
    pub fn cache_counts(&self) -> (u64, u64) {
        (self.cache_hits.load(Relaxed), self.db_reads.load(Relaxed))
    }

    fn render(&self) -> String {
        let classes = self.requests.iter().enumerate().map(|(i, count)| (format!("{}xx", i + 1), count.load(Relaxed)));
        fleetgate_contracts::metrics::Exposition::new()
            .labeled("fleetgate_api_responses_total", "counter", "Responses by status class.", "class", classes)
            .counter(
                "fleetgate_api_db_reads_total",
                "Authentication and metadata reads that went to Postgres.",
                self.db_reads.load(Relaxed),
            )
            .counter(
                "fleetgate_api_cache_hits_total",
                "Authentication and metadata reads served from memory.",
                self.cache_hits.load(Relaxed),
            )
            .finish()
    }
}

/// What every request handler shares.
pub struct AppState {
    /// The configuration the API started with.
    pub config: Config,
    /// Postgres connections.
    pub pool: deadpool_postgres::Pool,
    /// Redis (live state), reconnecting by itself.
    pub redis: redis::aio::ConnectionManager,
    /// NATS: registry notifications, commands, the live stream, cache invalidations.
    pub nats: async_nats::Client,
    /// Authenticated tokens.
    pub auth_cache: AuthCache,
    /// Devices per tenant.
    pub device_cache: live::DeviceCache,
    /// Composed `/v1/live` answers.
    pub live_cache: live::LiveCache,
    /// Failed logins.
    pub login_limiter: LoginLimiter,
    /// Counters.
    pub metrics: ApiMetrics,
}

impl AppState {
    /// A pooled Postgres connection.
    pub async fn db(&self) -> Result<deadpool_postgres::Object, ApiError> {
        Ok(self.pool.get().await?)
    }

    /// Subject prefix of this installation.
    pub fn prefix(&self) -> &str {
        &self.config.nats.subject_prefix
    }

    /// Tells every API process that a tenant's keys, users or devices changed.
    pub async fn invalidate(&self, tenant_id: TenantId) {
        self.auth_cache.invalidate_tenant(tenant_id);
        self.device_cache.invalidate(tenant_id);
        let subject = fleetgate_contracts::stream::invalidate_subject(self.prefix());
        let _ = self.nats.publish(subject, tenant_id.to_string().into()).await;
    }
}

/// A JSON body whose every rejection (bad JSON, wrong types, missing fields, too large,
/// wrong content type) is a 400 that says what is wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let message = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => "request body is larger than the limit".to_owned(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "expected Content-Type: application/json".to_owned(),
                    _ => rejection.body_text(),
                };
                Err(ApiError::BadRequest(message))
            }
        }
    }
}

/// Query parameters whose rejection (missing, unknown, wrong type) is a JSON 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// A path id whose rejection (not a number) is a JSON 400.
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<i64>::from_request_parts(parts, state)
            .await
            .map(|p| PathId(p.0))
            .map_err(|_| ApiError::BadRequest("the id in the path must be an integer".into()))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "fleetgate API", version = "1", description = "Devices, live state, history and commands of one tenant."),
    components(schemas(auth::Role)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The routes with their OpenAPI document.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(resources::login))
        .routes(routes!(resources::logout))
        .routes(routes!(resources::list_devices, resources::create_device))
        .routes(routes!(resources::get_device, resources::update_device, resources::delete_device))
        .routes(routes!(resources::list_groups, resources::create_group))
        .routes(routes!(resources::delete_group))
        .routes(routes!(resources::list_drivers, resources::create_driver))
        .routes(routes!(resources::delete_driver))
        .routes(routes!(resources::list_users, resources::create_user))
        .routes(routes!(resources::delete_user))
        .routes(routes!(resources::list_api_keys, resources::create_api_key))
        .routes(routes!(resources::revoke_api_key))
        .routes(routes!(live::all_live))
        .routes(routes!(live::device_live))
        .routes(routes!(live::stream))
        .routes(routes!(history::positions))
        .routes(routes!(history::events))
        .routes(routes!(traffic::traffic))
        .routes(routes!(reports::trips))
        .routes(routes!(reports::stops))
        .routes(routes!(reports::summary_report))
        .routes(routes!(reports::job))
        .routes(routes!(resources::list_geofences, resources::create_geofence))
        .routes(routes!(resources::delete_geofence))
        .routes(routes!(resources::get_report_rules, resources::put_report_rules))
        .routes(routes!(commands::queue_command, commands::list_commands))
        .with_state(state.clone())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let metrics_state = state.clone();
    let limit = state.config.api.max_body_bytes;
    router
        .route("/v1/openapi.json", get(move || async move { axum::Json(openapi.as_ref().clone()) }))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let state = metrics_state.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], state.metrics.render()) }
            }),
        )
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state, count_responses))
}

async fn count_responses(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    state.metrics.count_response(response.status());
    response
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backing service or the listener.
    #[error("{0}")]
    Setup(String),
}

/// Connects to Postgres, Redis and NATS.
pub async fn state(config: Config) -> Result<Arc<AppState>, StartError> {
    let pg_config: tokio_postgres::Config = config.postgres.url.parse().map_err(|e| {
        StartError::Setup(format!("postgres url {}: {e}", fleetgate_store::redact(&config.postgres.url)))
    })?;
    let manager = deadpool_postgres::Manager::from_config(
        pg_config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(16)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StartError::Setup(format!("postgres pool: {e}")))?;
    let redis_client =
        redis::Client::open(config.redis.url.as_str()).map_err(|e| StartError::Setup(format!("redis url: {e}")))?;
    let redis_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let redis = redis::aio::ConnectionManager::new_with_config(redis_client, redis_config)
        .await
        .map_err(|e| StartError::Setup(format!("redis at {}: {e}", config.redis.url)))?;
    let nats = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .connect(config.nats.url.as_str())
        .await
        .map_err(|e| StartError::Setup(format!("NATS at {}: {e}", config.nats.url)))?;
    let api = &config.api;
    Ok(Arc::new(AppState {
        auth_cache: AuthCache::new(Duration::from_secs(api.cache_ttl_s)),
        device_cache: live::DeviceCache::new(Duration::from_secs(api.cache_ttl_s)),
        live_cache: live::LiveCache::new(Duration::from_millis(api.live_cache_ms)),
        login_limiter: LoginLimiter::new(api.login_max_failures, Duration::from_secs(api.login_window_s)),
        metrics: ApiMetrics::default(),
        config,
        pool,
        redis,
        nats,
    }))
}

/// Binds the API's listener.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    TcpListener::bind(&config.api.bind)
        .await
        .map_err(|e| StartError::Setup(format!("cannot listen on {}: {e}", config.api.bind)))
}

/// Serves the API on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let state = state(config).await?;
    // Invalidations from the other API processes.
    let subject = fleetgate_contracts::stream::invalidate_subject(state.prefix());
    if let Ok(mut invalidations) = state.nats.subscribe(subject).await {
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(message) = invalidations.next().await {
                if let Some(tenant_id) = std::str::from_utf8(&message.payload).ok().and_then(|t| t.parse().ok()) {
                    state.auth_cache.invalidate_tenant(tenant_id);
                    state.device_cache.invalidate(tenant_id);
                }
            }
        });
    }
    tokio::spawn(reports::run_jobs(state.clone(), shutdown.clone()));
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%address, "api listening");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| StartError::Setup(format!("api server: {e}")))
}

/// Creates a tenant and its first admin API key (`fleetgate admin create-tenant`).
pub async fn create_tenant(client: &tokio_postgres::Client, name: &str) -> Result<(i64, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::BadRequest("the tenant name must be 1 to 200 characters".into()));
    }
    let key = auth::new_token("fgk_")?;
    let hash = auth::token_hash(&key);
    let hash: &[u8] = &hash;
    let hint = &key[key.len() - 4..];
    let row = client
        .query_one(
            "WITH t AS (INSERT INTO tenants (name) VALUES ($1) RETURNING id)
             INSERT INTO api_keys (tenant_id, name, role, key_hash, key_hint)
             SELECT id, 'bootstrap', 'admin', $2, $3 FROM t RETURNING tenant_id",
            &[&name, &hash, &hint],
        )
        .await?;
    Ok((row.get(0), key))
}

/// A 204 with no body.
pub fn no_content() -> impl IntoResponse {
    StatusCode::NO_CONTENT
}
