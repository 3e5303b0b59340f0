//! The API's one error type: every handler returns it, and it becomes a JSON body
//! `{"error": {"code": "...", "message": "..."}}` with the matching status. Server-side
//! failures are logged with their detail and answered without it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What went wrong, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials.
    #[error("missing, invalid or expired credentials")]
    Unauthorized,
    /// 403: authenticated, but the role does not allow it.
    #[error("your role does not allow this")]
    Forbidden,
    /// 404: no such object for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: conflicts with an existing object.
    #[error("{0}")]
    Conflict(String),
    /// 429: too many attempts; retry after the given seconds.
    #[error("too many attempts; retry in {0} s")]
    TooManyRequests(u64),
    /// 500: our fault; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
    /// 503: a backing service is down.
    #[error("service unavailable; retry shortly")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(detail, "request failed"),
            ApiError::Unavailable(detail) => tracing::warn!(detail, "backing service unavailable"),
            _ => {}
        }
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let ApiError::TooManyRequests(seconds) = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.is_closed() || error.as_db_error().is_none() && error.code().is_none() {
            return ApiError::Unavailable(format!("postgres: {error}"));
        }
        let detail = match error.as_db_error() {
            Some(db) => format!("postgres: {}: {}", db.code().code(), db.message()),
            None => format!("postgres: {error}"),
        };
        ApiError::Internal(detail)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("postgres pool: {error}"))
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        ApiError::Unavailable(format!("redis: {error}"))
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
