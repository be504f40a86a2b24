//! The API's one error type. Every failure a client can see has a stable `code` and the same
//! body shape: `{"error": {"code": "...", "message": "...", "field": "..."}}` (`field` only
//! where one input is at fault). Internal errors are logged with their whole cause chain and
//! answered with an opaque 500.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON syntax, a bad path or query parameter).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// Well-formed, but a value is not acceptable.
    #[error("{message}")]
    Validation { code: &'static str, field: Cow<'static, str>, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or not the caller's: the two are indistinguishable on purpose.
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A signed link past its expiry.
    #[error("{0}")]
    Gone(String),
    #[error("the request body is larger than allowed")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the service is busy, retry shortly")]
    Unavailable,
    /// Over a rate limit or a quota: 429 with `Retry-After`.
    #[error("{message}")]
    TooManyRequests { code: &'static str, message: String, retry_after: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(code: &'static str, field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::Validation { code, field: field.into(), message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Validation { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooManyRequests { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::Gone(_) => "link_expired",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut => ApiError::Unavailable,
            other => ApiError::Internal(anyhow::Error::new(other).context("database")),
        }
    }
}

/// Every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `not_found`, `invalid_content`, `conversation_closed`...
    pub code: String,
    /// For people.
    pub message: String,
    /// The input at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Over a limit: seconds to wait before trying again, as in the `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Validation { field, .. } => Some(field.to_string()),
            _ => None,
        };
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code().to_owned(), message, field, retry_after } };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The error responses of the OpenAPI document, each declared once. A route lists, after its
/// success, those it can answer: `responses((status = 200, body = X), Malformed, Unauthenticated)`;
/// a description that only one route gives stays a tuple in that route.
pub mod responses {
    use super::ErrorBody;

    #[derive(utoipa::IntoResponses)]
    #[response(status = 400, description = "Malformed request")]
    pub struct Malformed(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 401, description = "Missing or invalid token")]
    pub struct Unauthenticated(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 403, description = "Not an administrator")]
    pub struct NotAdmin(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 404, description = "No such conversation for this caller")]
    pub struct NoSuchConversation(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 409, description = "The conversation is closed")]
    pub struct ConversationClosed(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 413, description = "The request body is larger than 64 KiB")]
    pub struct TooLarge(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 415, description = "The body is not `application/json`")]
    pub struct NotJson(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 422, description = "Invalid input")]
    pub struct InvalidInput(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 429,
        description = "Over a rate limit or quota (`rate_limited`, `escalation_limit`, `too_many_streams`); retry after the seconds in `Retry-After`",
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))
    )]
    pub struct TooManyRequests(pub ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 503, description = "The service is busy (no database connection free in time); retry shortly")]
    pub struct Unavailable(pub ErrorBody);
}
