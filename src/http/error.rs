//! Errors of the HTTP API, sent before streaming starts as
//! `{"error":{"code":"…","message":"…"}}` with a real status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::bus::BusError;
use crate::channel::ChannelError;
use crate::cursor::CursorError;
use crate::streams::OpenError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    #[error("send one Authorization header, not several")]
    DuplicateAuthorization,
    #[error("add at least one `channel` query parameter")]
    NoChannel,
    #[error("at most {max} channels per stream, got {got}")]
    TooManyChannels { max: usize, got: usize },
    #[error("channel {index} (`{shown}`): {error}")]
    BadChannel {
        index: usize,
        shown: String,
        error: ChannelError,
    },
    #[error(
        "channel {index} (`{shown}`): no event is declared for prefix `{prefix}`; the declared prefixes are {known}{hint}"
    )]
    UnknownPrefix {
        index: usize,
        shown: String,
        prefix: String,
        /// The declared prefixes, quoted and listed.
        known: String,
        /// ` (did you mean `scans`?)`, or nothing.
        hint: String,
    },
    #[error("bad Last-Event-ID / last_event_id: {0}")]
    BadCursor(#[from] CursorError),
    #[error("channel `{0}` belongs to another tenant than the token's")]
    Forbidden(String),
    #[error(transparent)]
    Unavailable(#[from] BusError),
    #[error(transparent)]
    Refused(#[from] OpenError),
    #[error(
        "request URL is {got} bytes; at most {max} are accepted (use fewer or shorter channels, or send the token in the Authorization header)"
    )]
    UrlTooLong { max: usize, got: usize },
    #[error("request headers are {got} bytes; at most {max} are accepted")]
    HeadersTooLarge { max: usize, got: usize },
    #[error(
        "the request line or a header is not valid HTTP: characters such as < > \" and spaces must be percent-encoded in the URL (is a placeholder like <tenant> left in it?)"
    )]
    Malformed,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::DuplicateAuthorization
            | ApiError::NoChannel
            | ApiError::TooManyChannels { .. }
            | ApiError::BadChannel { .. }
            | ApiError::UnknownPrefix { .. }
            | ApiError::BadCursor(_)
            | ApiError::Malformed => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Refused(OpenError::Revoked { .. }) => StatusCode::UNAUTHORIZED,
            ApiError::Refused(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UrlTooLong { .. } => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::DuplicateAuthorization => "duplicate_authorization",
            ApiError::NoChannel => "missing_channel",
            ApiError::TooManyChannels { .. } => "too_many_channels",
            ApiError::BadChannel { .. } => "bad_channel",
            ApiError::UnknownPrefix { .. } => "unknown_prefix",
            ApiError::BadCursor(_) => "bad_cursor",
            ApiError::Forbidden(_) => "forbidden_channel",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Refused(OpenError::Revoked { .. }) => "token_revoked",
            ApiError::Refused(_) => "too_many_streams",
            ApiError::UrlTooLong { .. } => "url_too_long",
            ApiError::HeadersTooLarge { .. } => "headers_too_large",
            ApiError::Malformed => "bad_request",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            ApiError::Unauthenticated(_) | ApiError::Refused(OpenError::Revoked { .. }) => {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::Refused(_) => {
                // Streams are long-lived: a place frees up when one closes.
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("30"),
                );
            }
            _ => {}
        }
        response
    }
}
