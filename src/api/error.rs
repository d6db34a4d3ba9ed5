//! `ApiError`: every failure of the HTTP facade becomes a status and a JSON body
//! `{"error":{"code","message","path"?}}` with a Tencent-style code.
//!
//! Client errors say what is wrong and where (`path`). Server errors (I/O, corruption, a
//! poisoned log) get a generic body; the real error goes to the log, so paths and OS details
//! never reach a client.

use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, RejectKind};

/// Codes used by the HTTP layer itself (the library's own codes come with its errors).
pub mod codes {
    /// The body is not valid JSON.
    pub const MALFORMED_JSON: &str = "InvalidParameter.MalformedJson";
    /// A member has the wrong type or an unknown member was sent.
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    /// A member has a value outside what is allowed.
    pub const INVALID_VALUE: &str = "InvalidParameterValue";
    /// A required member or header is missing.
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    /// The body is larger than `max_body_bytes`.
    pub const BODY_TOO_LARGE: &str = "LimitExceeded.RequestBody";
    /// The content type is not one the route accepts.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "InvalidParameter.ContentType";
    /// No stored event has this id (`GET …/events/{id}`).
    pub const EVENT_NOT_FOUND: &str = "ResourceNotFound.Event";
    /// No route has this path.
    pub const NO_ROUTE: &str = "ResourceNotFound.Route";
    /// The route exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "UnsupportedOperation.Method";
    /// A route of the contract this build does not serve yet.
    pub const NOT_IMPLEMENTED: &str = "UnsupportedOperation.NotImplemented";
    /// No `Authorization: Bearer` header while tokens are configured.
    pub const TOKEN_MISSING: &str = "AuthFailure.TokenMissing";
    /// The bearer token is not one of the configured tokens.
    pub const TOKEN_INVALID: &str = "AuthFailure.InvalidToken";
    /// The token's role may not do this.
    pub const UNAUTHORIZED: &str = "AuthFailure.UnauthorizedOperation";
    /// Something failed inside the server; details are in its log.
    pub const INTERNAL: &str = "InternalError";
    /// The server is shutting down or a log is closed.
    pub const UNAVAILABLE: &str = "FailedOperation.ServiceUnavailable";
}

/// An HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Tencent-style code.
    pub code: String,
    /// For humans.
    pub message: String,
    /// The offending field as a JSON path, if one is at fault.
    pub path: Option<String>,
}

/// The error body, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `error` member of an error body (also used for failed entries of a put).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Tencent-style code, e.g. `InvalidParameterValue.EventPattern`.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// The offending field, e.g. `$.pattern.source[0]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            path: None,
        }
    }

    /// 400 naming the offending field.
    pub fn invalid(code: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            path: Some(path.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, code, message)
        }
    }

    /// 501 for a route of the contract this build does not serve yet.
    pub fn not_implemented(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            codes::NOT_IMPLEMENTED,
            format!("{what} is not available in this version of eventbus"),
        )
    }

    /// The body's `error` member.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.clone(),
            message: self.message.clone(),
            path: self.path.clone(),
        }
    }
}

/// The status of a library rejection.
pub fn reject_status(kind: RejectKind) -> StatusCode {
    match kind {
        RejectKind::Invalid => StatusCode::BAD_REQUEST,
        RejectKind::Denied => StatusCode::FORBIDDEN,
        RejectKind::NotFound => StatusCode::NOT_FOUND,
        RejectKind::Conflict => StatusCode::CONFLICT,
        RejectKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        RejectKind::LimitExceeded => StatusCode::BAD_REQUEST,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected {
                kind,
                code,
                message,
                path,
            } => ApiError {
                status: reject_status(kind),
                code,
                message,
                path,
            },
            Error::Invalid { field, message } => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: codes::INVALID_VALUE.to_string(),
                message: format!("{field}: {message}"),
                path: None,
            },
            Error::Unsupported(m) => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                codes::NOT_IMPLEMENTED,
                format!("not supported: {m}"),
            ),
            Error::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                "the server is shutting down",
            ),
            other => {
                // The client gets no paths or OS details; the operator gets everything.
                tracing::error!(error = %other, "request failed");
                let message = if other.is_no_space() {
                    "the server is out of disk space"
                } else {
                    "internal error; see the server log"
                };
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = ErrorBody {
            error: self.detail(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
