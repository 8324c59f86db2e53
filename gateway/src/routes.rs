//! The routes the gateway serves: one static table names each route's path, method, label and
//! API family ([`filters::protocol::Protocol`]), which decides what is scanned, how answers are
//! filtered and which error shape the route's clients get.
//!
//! Only known routes are forwarded: anything else gets a 404 from the gateway, so a backend's
//! other endpoints (admin, debug, vLLM's development routes) are never exposed by accident.
//! Adding an API family is one file in `filters/src/protocol/` and one row here.

use filters::protocol::{
    Dialect, Protocol, anthropic, openai_chat, openai_completions, openai_embeddings,
    openai_responses, tgi,
};
use http::Method;

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
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/messages` (Anthropic)
    Messages,
    /// `GET /info`
    Info,
    /// `GET /health`
    Health,
    /// `GET /metrics` (the backend's metrics)
    BackendMetrics,
    /// `GET /v1/models`
    Models,
    /// `POST|GET|DELETE /mcp/<server>`: an MCP server's Streamable HTTP endpoint (see
    /// `proxy/mcp.rs`); errors are JSON-RPC's.
    Mcp,
}

/// Which API family a route speaks.
#[derive(Clone, Copy)]
pub enum Family {
    /// One family.
    Fixed(&'static dyn Protocol),
    /// TGI's `/invocations`: the family is chosen by the body, as TGI chooses it.
    Sagemaker,
    /// No body to read (`GET` routes); errors in this dialect.
    NoBody(Dialect),
}

/// One row of the route table.
#[derive(Clone)]
pub struct RouteDef {
    /// The route.
    pub route: Route,
    /// Its path.
    pub path: &'static str,
    /// The method it accepts (`GET` routes also take `HEAD`).
    pub method: Method,
    /// Label in metrics, logs, the audit trail and `guard.routes` (never user input).
    pub label: &'static str,
    /// Its API family.
    pub family: Family,
}

/// The route table: route → path, method, label, API family.
pub static ROUTES: [RouteDef; 16] = [
    row(
        Route::Compat,
        "/",
        Method::POST,
        "compat_generate",
        Family::Fixed(&tgi::Generate),
    ),
    row(
        Route::Generate,
        "/generate",
        Method::POST,
        "generate",
        Family::Fixed(&tgi::Generate),
    ),
    row(
        Route::GenerateStream,
        "/generate_stream",
        Method::POST,
        "generate_stream",
        Family::Fixed(&tgi::Generate),
    ),
    row(
        Route::Tokenize,
        "/tokenize",
        Method::POST,
        "tokenize",
        Family::Fixed(&tgi::Tokenize),
    ),
    row(
        Route::ChatTokenize,
        "/chat_tokenize",
        Method::POST,
        "chat_tokenize",
        Family::Fixed(&openai_chat::ChatTokenize),
    ),
    row(
        Route::Invocations,
        "/invocations",
        Method::POST,
        "invocations",
        Family::Sagemaker,
    ),
    row(
        Route::ChatCompletions,
        "/v1/chat/completions",
        Method::POST,
        "chat_completions",
        Family::Fixed(&openai_chat::Chat),
    ),
    row(
        Route::Completions,
        "/v1/completions",
        Method::POST,
        "completions",
        Family::Fixed(&openai_completions::Completions),
    ),
    row(
        Route::Responses,
        "/v1/responses",
        Method::POST,
        "responses",
        Family::Fixed(&openai_responses::Responses),
    ),
    row(
        Route::Embeddings,
        "/v1/embeddings",
        Method::POST,
        "embeddings",
        Family::Fixed(&openai_embeddings::Embeddings),
    ),
    row(
        Route::Messages,
        "/v1/messages",
        Method::POST,
        "messages",
        Family::Fixed(&anthropic::Messages),
    ),
    row(
        Route::Info,
        "/info",
        Method::GET,
        "info",
        Family::NoBody(Dialect::Tgi),
    ),
    row(
        Route::Health,
        "/health",
        Method::GET,
        "health",
        Family::NoBody(Dialect::Tgi),
    ),
    row(
        Route::BackendMetrics,
        "/metrics",
        Method::GET,
        "metrics",
        Family::NoBody(Dialect::Tgi),
    ),
    row(
        Route::Models,
        "/v1/models",
        Method::GET,
        "models",
        Family::NoBody(Dialect::OpenAi),
    ),
    // the path is a prefix: `/mcp/<server>` (the MCP handler reads its own bodies)
    row(
        Route::Mcp,
        MCP_PREFIX,
        Method::POST,
        "mcp",
        Family::NoBody(Dialect::JsonRpc),
    ),
];

/// The path prefix of the MCP servers' endpoints.
pub const MCP_PREFIX: &str = "/mcp/";

const fn row(
    route: Route,
    path: &'static str,
    method: Method,
    label: &'static str,
    family: Family,
) -> RouteDef {
    RouteDef {
        route,
        path,
        method,
        label,
        family,
    }
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
    /// Every route, in table order (for metrics initialisation and documentation).
    pub fn all() -> impl Iterator<Item = Route> {
        ROUTES.iter().map(|d| d.route)
    }

    /// Number of routes.
    pub const COUNT: usize = ROUTES.len();

    /// Match a method and path (without query).
    pub fn classify(method: &Method, path: &str) -> Result<Route, RouteError> {
        if path.starts_with(MCP_PREFIX) {
            // Streamable HTTP: POST messages, GET the server's stream, DELETE the session
            return if matches!(*method, Method::POST | Method::GET | Method::DELETE) {
                Ok(Route::Mcp)
            } else {
                Err(RouteError::MethodNotAllowed {
                    allowed: Method::POST,
                })
            };
        }
        let def = ROUTES
            .iter()
            .find(|d| d.path == path)
            .ok_or(RouteError::NotFound)?;
        if *method == def.method || (def.method == Method::GET && *method == Method::HEAD) {
            Ok(def.route)
        } else {
            Err(RouteError::MethodNotAllowed {
                allowed: def.method.clone(),
            })
        }
    }

    /// The route's row.
    pub fn def(self) -> &'static RouteDef {
        &ROUTES[self.index()]
    }

    /// Position in [`ROUTES`] (for per-route tables).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The method the route accepts.
    pub fn method(self) -> Method {
        self.def().method.clone()
    }

    /// Whether requests carry a JSON body that the gateway reads, checks and forwards whole.
    pub fn has_json_body(self) -> bool {
        !matches!(self.def().family, Family::NoBody(_))
    }

    /// The API family of a request to this route with body `body` (`None`: no body to read).
    pub fn protocol(self, body: &serde_json::Value) -> Option<&'static dyn Protocol> {
        match self.def().family {
            Family::Fixed(p) => Some(p),
            Family::Sagemaker => Some(filters::protocol::invocations(body)),
            Family::NoBody(_) => None,
        }
    }

    /// The error dialect of the route (`/invocations` speaks TGI's until its body is read).
    pub fn dialect(self) -> Dialect {
        match self.def().family {
            Family::Fixed(p) => p.dialect(),
            Family::Sagemaker => Dialect::Tgi,
            Family::NoBody(d) => d,
        }
    }

    /// Whether the route sends text to the model (its prompts are guarded and its tokens
    /// counted).
    pub fn has_prompt(self) -> bool {
        self.has_json_body()
    }

    /// Label used in metrics and logs (bounded set, never user input).
    pub fn label(self) -> &'static str {
        self.def().label
    }

    /// The route with this label.
    pub fn by_label(label: &str) -> Option<Route> {
        ROUTES.iter().find(|d| d.label == label).map(|d| d.route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order_and_classifies_every_route() {
        for (i, d) in ROUTES.iter().enumerate() {
            assert_eq!(d.route.index(), i, "{} out of order", d.path);
            assert_eq!(Route::classify(&d.method, d.path), Ok(d.route));
            assert_eq!(Route::by_label(d.label), Some(d.route));
        }
        assert_eq!(Route::all().count(), Route::COUNT);
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
        for m in [Method::POST, Method::GET, Method::DELETE] {
            assert_eq!(Route::classify(&m, "/mcp/github"), Ok(Route::Mcp));
        }
        assert!(Route::classify(&Method::PUT, "/mcp/github").is_err());
        assert_eq!(
            Route::classify(&Method::POST, "/mcp"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn families_and_dialects() {
        let v = serde_json::json!({});
        assert_eq!(Route::ChatCompletions.dialect(), Dialect::OpenAi);
        assert_eq!(Route::GenerateStream.dialect(), Dialect::Tgi);
        assert_eq!(Route::Messages.dialect(), Dialect::Anthropic);
        assert_eq!(
            Route::Responses.protocol(&v).map(|p| p.name()),
            Some("openai.responses")
        );
        assert!(Route::Info.protocol(&v).is_none());
        assert_eq!(
            Route::Invocations
                .protocol(&serde_json::json!({"messages": []}))
                .map(|p| p.name()),
            Some("openai.chat")
        );
        assert_eq!(Dialect::for_path("/v1/nope"), Dialect::OpenAi);
        assert_eq!(
            Dialect::for_path("/v1/messages/count_tokens"),
            Dialect::Anthropic
        );
        assert_eq!(Dialect::for_path("/nope"), Dialect::Tgi);
    }
}
