//! Errors the gateway answers itself, in the shape the route's clients expect.
//!
//! Every such answer carries `x-portcullis-error-source: gateway`; answers the backend produced
//! carry `x-portcullis-error-source: backend` when their status is an error, so users can always
//! tell our refusals and failures from the model server's.

use bytes::Bytes;
use filters::protocol::{Dialect, ErrorInfo, Protocol, StreamState};
use http::StatusCode;

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
    /// A field that may reach the model and that the gateway cannot read (an unknown member or
    /// content type, a non-string where text belongs); the policy refuses what it cannot read.
    UnreadableRequest,
    /// The request body is compressed (`Content-Encoding`), which the gateway does not read.
    UnsupportedEncoding,
    /// The backend's answer cannot be filtered (compressed, or an event too large to read).
    UnreadableAnswer,
    /// A prompt text needs more classifier windows than the gateway scores per text, and the
    /// policy fails closed.
    PromptTooLong,
    /// The request names a LoRA adapter the caller may not use, or one that is not live.
    AdapterNotAllowed,
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
            ErrorKind::UnreadableRequest => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::UnreadableAnswer => StatusCode::BAD_GATEWAY,
            ErrorKind::PromptTooLong => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::AdapterNotAllowed => StatusCode::BAD_REQUEST,
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
            ErrorKind::UnreadableRequest => "unsupported_request_shape",
            ErrorKind::UnsupportedEncoding => "unsupported_content_encoding",
            ErrorKind::UnreadableAnswer => "unreadable_answer",
            ErrorKind::PromptTooLong => "prompt_too_long_for_classifier",
            ErrorKind::AdapterNotAllowed => "adapter_not_allowed",
        }
    }

    /// Whether the client caused it (4xx) rather than the gateway or the backend.
    pub fn is_client_error(self) -> bool {
        self.status().is_client_error()
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

    /// The error independent of its shape.
    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            status: self.kind.status().as_u16(),
            code: self.kind.code(),
            message: self.message.clone(),
        }
    }

    /// The JSON body of the answer, in `dialect`.
    pub fn body(&self, dialect: Dialect) -> Bytes {
        Bytes::from(dialect.body(&self.info()).to_string())
    }

    /// A final server-sent event carrying the error, for a stream that already started, in the
    /// family's own framing (TGI `data:{...}`, OpenAI `data: {"error":{...}}`, Responses and
    /// Anthropic `event: error`).
    pub fn stream_event(
        &self,
        proto: Option<&dyn Protocol>,
        dialect: Dialect,
        st: Option<&StreamState>,
    ) -> Bytes {
        Bytes::from(match proto {
            Some(p) => p.error_event(&self.info(), st),
            None => dialect.event(&self.info()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tgi_shape() {
        let e = GatewayError::new(ErrorKind::BodyTooLarge, "too big");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Tgi)).unwrap();
        assert_eq!(
            v,
            json!({"error": "too big", "error_type": "request_too_large"})
        );
    }

    #[test]
    fn openai_shape() {
        let e = GatewayError::new(ErrorKind::NoHealthyUpstream, "none");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::OpenAi)).unwrap();
        assert_eq!(v["error"]["message"], "none");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "no_healthy_upstream");
        assert!(v["error"]["param"].is_null());
        let e = GatewayError::new(ErrorKind::InvalidJson, "bad");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::OpenAi)).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn anthropic_shape() {
        let e = GatewayError::new(ErrorKind::PolicyForbidden, "no");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Anthropic)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(v["error"]["message"], "no");
        let e = GatewayError::new(ErrorKind::RateLimited, "slow");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Anthropic)).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
    }

    #[test]
    fn stream_events_are_single_sse_events() {
        let e = GatewayError::new(ErrorKind::UpstreamProtocol, "lost");
        let tgi = e.stream_event(None, Dialect::Tgi, None);
        assert!(tgi.starts_with(b"data:{") && tgi.ends_with(b"\n\n"));
        let oa = e.stream_event(None, Dialect::OpenAi, None);
        assert!(oa.starts_with(b"data: {\"error\":{") && oa.ends_with(b"\n\n"));
        let an = e.stream_event(
            Some(&filters::protocol::anthropic::Messages),
            Dialect::Anthropic,
            None,
        );
        assert!(an.starts_with(b"event: error\ndata: {") && an.ends_with(b"\n\n"));
        let re = e.stream_event(
            Some(&filters::protocol::openai_responses::Responses),
            Dialect::OpenAi,
            None,
        );
        assert!(re.starts_with(b"event: error\ndata: {"), "{re:?}");
    }

    #[test]
    fn statuses() {
        assert_eq!(ErrorKind::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorKind::InvalidJson.status(), 422);
        assert_eq!(ErrorKind::BodyTooLarge.status(), 413);
        assert_eq!(ErrorKind::UnreadableRequest.status(), 422);
        assert!(ErrorKind::BodyTooLarge.is_client_error());
        assert!(!ErrorKind::UpstreamConnect.is_client_error());
    }
}
