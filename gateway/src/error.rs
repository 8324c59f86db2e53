//! Errors the gateway answers itself, in the shape the route's clients expect.
//!
//! Every such answer carries `x-portcullis-error-source: gateway`; answers the backend produced
//! carry `x-portcullis-error-source: backend` when their status is an error, so users can always
//! tell our refusals and failures from the model server's.

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use crate::routes::Api;

/// Header naming who produced an error answer: `gateway` or `backend`.
pub const ERROR_SOURCE_HEADER: &str = "x-portcullis-error-source";
/// Header carrying the request id (accepted from the client when well-formed).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What went wrong, from the gateway's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such route.
    NotFound,
    /// Known route, wrong method.
    MethodNotAllowed,
    /// Body over the configured limit.
    BodyTooLarge,
    /// A chunked body too large to replay; the client should send `Content-Length`.
    LengthRequired,
    /// The body of a JSON route is not JSON.
    InvalidJson,
    /// The client did not send its body in time.
    RequestTimeout,
    /// Every backend of the pool is unhealthy or has an open circuit.
    NoHealthyUpstream,
    /// Connecting to the backend failed (after retries).
    UpstreamConnect,
    /// The backend did not answer in time.
    UpstreamTimeout,
    /// The backend broke the connection or sent an invalid response.
    UpstreamProtocol,
    /// A bug or resource problem in the gateway.
    Internal,
    /// A guardrail policy refused the request (HTTP 403).
    PolicyForbidden,
    /// A guardrail policy refused the request (HTTP 400, for policies that ask for it).
    PolicyBadRequest,
    /// No API key, or one that is unknown, expired or revoked.
    Unauthorized,
    /// A gateway limit (rate, token quota, concurrency) refused the request.
    RateLimited,
    /// The shared limit store is unreachable and the config says fail closed.
    LimiterUnavailable,
    /// The model classifiers did not answer in time and the policy says fail closed.
    ClassifierUnavailable,
}

impl ErrorKind {
    /// HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ErrorKind::InvalidJson => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::PolicyForbidden => StatusCode::FORBIDDEN,
            ErrorKind::PolicyBadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimiterUnavailable | ErrorKind::ClassifierUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Machine-readable code: TGI's `error_type`, OpenAI's `error.code`, and the metrics label.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::BodyTooLarge => "request_too_large",
            ErrorKind::LengthRequired => "length_required",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::UpstreamConnect => "upstream_connect_error",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamProtocol => "upstream_error",
            ErrorKind::Internal => "internal_error",
            ErrorKind::PolicyForbidden | ErrorKind::PolicyBadRequest => "policy_violation",
            ErrorKind::Unauthorized => "invalid_api_key",
            ErrorKind::RateLimited => "rate_limit_exceeded",
            ErrorKind::LimiterUnavailable => "limiter_unavailable",
            ErrorKind::ClassifierUnavailable => "classifier_unavailable",
        }
    }

    /// Whether the client caused it (4xx) rather than the gateway or the backend.
    pub fn is_client_error(self) -> bool {
        self.status().is_client_error()
    }

    /// OpenAI's `error.type`.
    fn openai_type(self) -> &'static str {
        if self.is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        }
    }
}

/// An error the gateway answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// A message for humans. Never contains request content.
    pub message: String,
}

impl GatewayError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
        }
    }

    fn value(&self, api: Api) -> serde_json::Value {
        match api {
            Api::Tgi => json!({"error": self.message, "error_type": self.kind.code()}),
            Api::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind.openai_type(),
                "param": null,
                "code": self.kind.code(),
            }}),
        }
    }

    /// The JSON body of the answer.
    pub fn body(&self, api: Api) -> Bytes {
        Bytes::from(self.value(api).to_string())
    }

    /// A final server-sent event carrying the error, for a stream that already started: TGI's
    /// `data:{"error",...}` framing, or OpenAI's `data: {"error":{...}}`.
    pub fn stream_event(&self, api: Api) -> Bytes {
        let v = self.value(api).to_string();
        Bytes::from(match api {
            Api::Tgi => format!("data:{v}\n\n"),
            Api::OpenAi => format!("data: {v}\n\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tgi_shape() {
        let e = GatewayError::new(ErrorKind::BodyTooLarge, "too big");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Api::Tgi)).unwrap();
        assert_eq!(
            v,
            json!({"error": "too big", "error_type": "request_too_large"})
        );
    }

    #[test]
    fn openai_shape() {
        let e = GatewayError::new(ErrorKind::NoHealthyUpstream, "none");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Api::OpenAi)).unwrap();
        assert_eq!(v["error"]["message"], "none");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "no_healthy_upstream");
        assert!(v["error"]["param"].is_null());
        let e = GatewayError::new(ErrorKind::InvalidJson, "bad");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Api::OpenAi)).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn stream_events_are_single_sse_events() {
        let e = GatewayError::new(ErrorKind::UpstreamProtocol, "lost");
        let tgi = e.stream_event(Api::Tgi);
        assert!(tgi.starts_with(b"data:{") && tgi.ends_with(b"\n\n"));
        let oa = e.stream_event(Api::OpenAi);
        assert!(oa.starts_with(b"data: {\"error\":{") && oa.ends_with(b"\n\n"));
    }

    #[test]
    fn statuses() {
        assert_eq!(ErrorKind::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorKind::InvalidJson.status(), 422);
        assert_eq!(ErrorKind::BodyTooLarge.status(), 413);
        assert!(ErrorKind::BodyTooLarge.is_client_error());
        assert!(!ErrorKind::UpstreamConnect.is_client_error());
    }
}
