//! The gateway's error type and its one mapping onto SCIM HTTP responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use roster_scim::error::{ScimError, ScimType};
use tonic::Code;

use crate::auth::AuthFailure;
use crate::response::scim_json;

pub use roster_proto::contract::{SCIM_STATUS_METADATA, SCIM_TYPE_METADATA};

/// Seconds an IdP is asked to wait before retrying after a 503 or 429.
const RETRY_AFTER_SECS: u64 = 5;

/// Everything a gateway request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A SCIM protocol error with its status and `scimType`.
    #[error("{}", .0.detail)]
    Scim(ScimError),
    /// The bearer token is missing, malformed, unknown, revoked or belongs
    /// to another directory. The client is never told which, so nothing
    /// leaks; the log says it for the operator.
    #[error("unauthorized: {}", .0.as_str())]
    Unauthorized(AuthFailure),
    /// The directory service rejected this gateway's own internal
    /// credential: a misconfiguration, an outage for every IdP.
    #[error("the directory service rejected the gateway's internal credential")]
    InternalAuthRejected,
    /// Too many failed authentications from this client, or too many token
    /// checks overall; refused before authenticating.
    #[error("too many requests before authentication")]
    Throttled {
        /// Seconds until a request would be admitted again.
        retry_after_secs: u64,
    },
    /// The directory's token bucket is empty.
    #[error("rate limit exceeded")]
    RateLimited {
        /// Seconds until a request would be admitted again.
        retry_after_secs: u64,
    },
    /// The directory service cannot be reached or did not answer in time.
    #[error("directory service unavailable: {0}")]
    Unavailable(String),
    /// The request took longer than the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// A bug or an unexpected answer; the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ScimError> for GatewayError {
    fn from(e: ScimError) -> Self {
        Self::Scim(e)
    }
}

impl From<tonic::Status> for GatewayError {
    fn from(status: tonic::Status) -> Self {
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                Self::Unavailable(format!("{:?}: {}", status.code(), status.message()))
            }
            // An UNKNOWN or INTERNAL with a source was made by the client
            // from a broken connection (the directory service was killed
            // mid-call, or speaks TLS where plain HTTP/2 was expected: an h2
            // protocol error), not sent by the server: the IdP should retry.
            Code::Unknown | Code::Internal if std::error::Error::source(&status).is_some() => {
                Self::Unavailable(format!("transport: {}", status.message()))
            }
            Code::Internal | Code::Unknown | Code::DataLoss => {
                Self::Internal(format!("{:?}: {}", status.code(), status.message()))
            }
            Code::Unauthenticated if roster_proto::internal_auth::is_rejection(&status) => {
                Self::InternalAuthRejected
            }
            Code::Unauthenticated => Self::Unauthorized(AuthFailure::UnknownOrRevokedToken),
            _ => scim_error_from_metadata(&status)
                .map(Self::Scim)
                .unwrap_or_else(|| scim_error_from_code(&status)),
        }
    }
}

/// The SCIM error the directory service spelled out in metadata, if any.
fn scim_error_from_metadata(status: &tonic::Status) -> Option<ScimError> {
    let http_status = status
        .metadata()
        .get(SCIM_STATUS_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|s| (400..500).contains(s))?;
    Some(ScimError {
        status: http_status,
        scim_type: scim_type_of(status),
        detail: status.message().to_owned(),
    })
}

fn scim_type_of(status: &tonic::Status) -> Option<ScimType> {
    status
        .metadata()
        .get(SCIM_TYPE_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(ScimType::parse)
}

/// The SCIM error for a gRPC code when no metadata says better.
fn scim_error_from_code(status: &tonic::Status) -> GatewayError {
    let detail = status.message().to_owned();
    let with_type = |http_status: u16| ScimError {
        status: http_status,
        scim_type: scim_type_of(status),
        detail: detail.clone(),
    };
    let scim = match status.code() {
        Code::NotFound => ScimError::not_found(detail.clone()),
        Code::AlreadyExists => ScimError::uniqueness(detail.clone()),
        Code::FailedPrecondition => ScimError::precondition_failed(detail.clone()),
        Code::InvalidArgument => with_type(400),
        Code::OutOfRange => ScimError::invalid_value(detail.clone()),
        Code::PermissionDenied => with_type(403),
        Code::Unimplemented => with_type(501),
        Code::ResourceExhausted => {
            return GatewayError::RateLimited {
                retry_after_secs: 1,
            };
        }
        _ => return GatewayError::Internal(format!("{:?}: {detail}", status.code())),
    };
    GatewayError::Scim(scim)
}

impl GatewayError {
    /// The SCIM error body sent for this error. Internal details stay out.
    pub fn to_scim(&self) -> ScimError {
        match self {
            Self::Scim(e) => e.clone(),
            Self::Unauthorized(_) => ScimError::unauthorized(
                "bearer token missing, invalid, revoked, or not valid for this directory"
                    .to_owned(),
            ),
            Self::RateLimited { .. } => ScimError {
                status: 429,
                scim_type: None,
                detail: "too many requests for this directory; retry later".to_owned(),
            },
            Self::Throttled { .. } => ScimError {
                status: 429,
                scim_type: None,
                detail: "too many requests; retry later".to_owned(),
            },
            Self::Unavailable(_) | Self::InternalAuthRejected => ScimError {
                status: 503,
                scim_type: None,
                detail: "directory service temporarily unavailable; retry later".to_owned(),
            },
            Self::Timeout => ScimError {
                status: 503,
                scim_type: None,
                detail: "request timed out; retry later".to_owned(),
            },
            Self::Internal(_) => ScimError {
                status: 500,
                scim_type: None,
                detail: "internal server error".to_owned(),
            },
        }
    }

    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.to_scim().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } | Self::Throttled { retry_after_secs } => {
                Some((*retry_after_secs).max(1))
            }
            Self::Unavailable(_) | Self::Timeout | Self::InternalAuthRejected => {
                Some(RETRY_AFTER_SECS)
            }
            _ => None,
        }
    }
}

impl GatewayError {
    /// What the operator needs to know about this error (never a credential).
    fn log(&self) {
        match self {
            Self::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            Self::Unavailable(detail) => {
                tracing::warn!(error = %detail, "directory service unavailable")
            }
            Self::InternalAuthRejected => tracing::error!(
                cause = "internal_credential_rejected",
                "the directory service rejected this gateway's internal credential: \
                 the gateway's ROSTER_INTERNAL_SECRET (--internal-secret) must equal the \
                 directory service's; every SCIM request answers 503 until it does"
            ),
            Self::Unauthorized(reason) => {
                roster_telemetry::metrics::metrics()
                    .auth_failures
                    .get_or_create(&roster_telemetry::metrics::ReasonLabels {
                        reason: reason.as_str().to_owned(),
                    })
                    .inc();
                tracing::warn!(
                    reason = reason.as_str(),
                    "authentication failed ({}); answering 401",
                    reason.describe()
                );
            }
            _ => {}
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.log();
        let scim = self.to_scim();
        let status = StatusCode::from_u16(scim.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = scim_json(status, &scim.to_json());
        // For the audit trail: what was answered, and for a 401 why.
        response
            .extensions_mut()
            .insert(crate::activity::ErrorNote {
                scim_type: scim.scim_type.map(|t| t.as_str()),
                detail: match &self {
                    Self::Unauthorized(reason) => reason.as_str().to_owned(),
                    _ => scim.detail.clone(),
                },
            });
        response
            .extensions_mut()
            .insert(crate::dialect::ErrorMessage(scim));
        let headers = response.headers_mut();
        if matches!(self, Self::Unauthorized(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"roster\""),
            );
        }
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_credential_rejections_are_outages_not_bad_tokens() {
        let internal = roster_proto::internal_auth::rejected("wrong internal credentials");
        let error = GatewayError::from(internal);
        assert!(matches!(error, GatewayError::InternalAuthRejected));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert!(matches!(
            GatewayError::from(tonic::Status::unauthenticated("invalid or revoked token")),
            GatewayError::Unauthorized(AuthFailure::UnknownOrRevokedToken)
        ));
    }

    #[test]
    fn broken_connections_are_unavailable_but_unknown_answers_are_internal() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let broken = tonic::Status::from_error(Box::new(reset));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(matches!(
            GatewayError::from(broken),
            GatewayError::Unavailable(_)
        ));
        let answered = tonic::Status::unknown("the server said so");
        assert!(matches!(
            GatewayError::from(answered),
            GatewayError::Internal(_)
        ));
    }
}
