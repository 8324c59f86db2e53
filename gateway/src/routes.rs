//! The routes the gateway serves, and which API's error shape each one speaks.
//!
//! Only known routes are forwarded: anything else gets a 404 from the gateway, so a backend's
//! other endpoints (admin, debug) are never exposed by accident.

use http::Method;

/// Which API family a route belongs to; decides the shape of error bodies and stream events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// TGI-native: `{"error": "...", "error_type": "..."}`.
    Tgi,
    /// OpenAI-compatible: `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
}

/// A route the gateway forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /` (TGI compat: JSON or SSE depending on `stream`).
    Compat,
    /// `POST /generate`
    Generate,
    /// `POST /generate_stream`
    GenerateStream,
    /// `POST /tokenize`
    Tokenize,
    /// `POST /chat_tokenize`
    ChatTokenize,
    /// `POST /invocations` (SageMaker)
    Invocations,
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `GET /info`
    Info,
    /// `GET /health`
    Health,
    /// `GET /metrics` (the backend's metrics)
    BackendMetrics,
    /// `GET /v1/models`
    Models,
}

/// Why a request matches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Unknown path.
    NotFound,
    /// Known path, wrong method.
    MethodNotAllowed {
        /// The method the route accepts.
        allowed: Method,
    },
}

impl Route {
    /// Every route, for metrics initialisation and documentation.
    pub const ALL: [Route; 12] = [
        Route::Compat,
        Route::Generate,
        Route::GenerateStream,
        Route::Tokenize,
        Route::ChatTokenize,
        Route::Invocations,
        Route::ChatCompletions,
        Route::Completions,
        Route::Info,
        Route::Health,
        Route::BackendMetrics,
        Route::Models,
    ];

    /// Match a method and path (without query).
    pub fn classify(method: &Method, path: &str) -> Result<Route, RouteError> {
        let route = match path {
            "/" => Route::Compat,
            "/generate" => Route::Generate,
            "/generate_stream" => Route::GenerateStream,
            "/tokenize" => Route::Tokenize,
            "/chat_tokenize" => Route::ChatTokenize,
            "/invocations" => Route::Invocations,
            "/v1/chat/completions" => Route::ChatCompletions,
            "/v1/completions" => Route::Completions,
            "/info" => Route::Info,
            "/health" => Route::Health,
            "/metrics" => Route::BackendMetrics,
            "/v1/models" => Route::Models,
            _ => return Err(RouteError::NotFound),
        };
        let allowed = route.method();
        if *method == allowed || (allowed == Method::GET && *method == Method::HEAD) {
            Ok(route)
        } else {
            Err(RouteError::MethodNotAllowed { allowed })
        }
    }

    /// Position in [`Route::ALL`] (for per-route tables).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The method the route accepts.
    pub fn method(self) -> Method {
        if self.has_json_body() {
            Method::POST
        } else {
            Method::GET
        }
    }

    /// Whether requests carry a JSON body that the gateway reads, checks and forwards whole.
    pub fn has_json_body(self) -> bool {
        !matches!(
            self,
            Route::Info | Route::Health | Route::BackendMetrics | Route::Models
        )
    }

    /// The API family.
    pub fn api(self) -> Api {
        match self {
            Route::ChatCompletions | Route::Completions | Route::Models => Api::OpenAi,
            _ => Api::Tgi,
        }
    }

    /// Label used in metrics and logs (bounded set, never user input).
    pub fn label(self) -> &'static str {
        match self {
            Route::Compat => "compat_generate",
            Route::Generate => "generate",
            Route::GenerateStream => "generate_stream",
            Route::Tokenize => "tokenize",
            Route::ChatTokenize => "chat_tokenize",
            Route::Invocations => "invocations",
            Route::ChatCompletions => "chat_completions",
            Route::Completions => "completions",
            Route::Info => "info",
            Route::Health => "health",
            Route::BackendMetrics => "metrics",
            Route::Models => "models",
        }
    }
}

/// The error shape for a path that may match no route: OpenAI's under `/v1/`, TGI's elsewhere.
pub fn api_for_path(path: &str) -> Api {
    if path.starts_with("/v1/") {
        Api::OpenAi
    } else {
        Api::Tgi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_tgi_and_openai_route() {
        for r in Route::ALL {
            let path = match r {
                Route::Compat => "/",
                Route::Generate => "/generate",
                Route::GenerateStream => "/generate_stream",
                Route::Tokenize => "/tokenize",
                Route::ChatTokenize => "/chat_tokenize",
                Route::Invocations => "/invocations",
                Route::ChatCompletions => "/v1/chat/completions",
                Route::Completions => "/v1/completions",
                Route::Info => "/info",
                Route::Health => "/health",
                Route::BackendMetrics => "/metrics",
                Route::Models => "/v1/models",
            };
            assert_eq!(Route::classify(&r.method(), path), Ok(r));
        }
    }

    #[test]
    fn indexes_match_all() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn wrong_method_and_unknown_paths() {
        assert_eq!(
            Route::classify(&Method::GET, "/generate"),
            Err(RouteError::MethodNotAllowed {
                allowed: Method::POST
            })
        );
        assert_eq!(
            Route::classify(&Method::POST, "/admin"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            Route::classify(&Method::POST, "/generate/"),
            Err(RouteError::NotFound)
        );
        assert_eq!(Route::classify(&Method::HEAD, "/health"), Ok(Route::Health));
    }

    #[test]
    fn shapes() {
        assert_eq!(Route::ChatCompletions.api(), Api::OpenAi);
        assert_eq!(Route::GenerateStream.api(), Api::Tgi);
        assert_eq!(api_for_path("/v1/nope"), Api::OpenAi);
        assert_eq!(api_for_path("/nope"), Api::Tgi);
    }
}
