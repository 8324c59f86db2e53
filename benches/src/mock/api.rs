//! Request payloads of TGI's API, as the mock reads them.
//!
//! Only the fields the mock acts on are typed; like TGI's router, unknown sampling fields are
//! accepted and ignored. Responses are built with `serde_json::json!` in `routes.rs`, field for
//! field as TGI's OpenAPI document names them.

use serde::Deserialize;

/// `POST /generate`, `POST /generate_stream`, `POST /tokenize`, and `POST /` (with `stream`).
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    /// The prompt.
    pub inputs: String,
    /// Generation parameters.
    #[serde(default)]
    pub parameters: GenerateParameters,
    /// Only on the compat route `/`: stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
}

/// TGI's `GenerateParameters` (the fields that change what the mock answers).
#[derive(Debug, Default, Deserialize)]
pub struct GenerateParameters {
    /// Maximum number of tokens to generate.
    pub max_new_tokens: Option<u32>,
    /// Stop sequences (at most 4).
    pub stop: Option<Vec<String>>,
    /// Return generation details (`/generate`; real TGI defaults to false).
    pub details: Option<bool>,
    /// Return prefill tokens in the details.
    pub decoder_input_details: Option<bool>,
    /// Prepend the prompt to the generated text.
    pub return_full_text: Option<bool>,
    /// Sampling seed, echoed in the details.
    pub seed: Option<u64>,
    /// LoRA adapter id (TGI silently falls back to the base model for unknown ids).
    pub adapter_id: Option<String>,
}

/// `POST /v1/chat/completions` and `POST /chat_tokenize`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Maximum number of tokens to generate.
    pub max_tokens: Option<u32>,
    /// Stream `chat.completion.chunk` events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Stop sequences.
    pub stop: Option<Vec<String>>,
    /// Model name; TGI maps it to `adapter_id` unless it is `"tgi"`.
    pub model: Option<String>,
    /// Sampling seed.
    pub seed: Option<u64>,
}

/// `stream_options` of the OpenAI routes.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with token usage before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or a list of content parts; absent for some tool-call messages.
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// Message content: a string or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts; the mock uses the text parts.
    Parts(Vec<ContentPart>),
}

/// One content part (`{"type":"text","text":...}` or `{"type":"image_url",...}`).
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// Part type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a text part.
    pub text: Option<String>,
}

impl Message {
    /// The message's text (text parts joined).
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// A prompt, or a list of prompts (the mock answers the first).
    pub prompt: Prompt,
    /// Maximum number of tokens to generate.
    pub max_tokens: Option<u32>,
    /// Stream `text_completion` chunks.
    #[serde(default)]
    pub stream: bool,
    /// Stop sequences.
    pub stop: Option<Vec<String>>,
    /// Model name.
    pub model: Option<String>,
    /// Sampling seed.
    pub seed: Option<u64>,
}

/// A completion prompt.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One prompt.
    One(String),
    /// Several prompts.
    Many(Vec<String>),
}

impl Prompt {
    /// The first prompt (empty when the list is empty).
    pub fn first(&self) -> &str {
        match self {
            Prompt::One(s) => s,
            Prompt::Many(v) => v.first().map_or("", String::as_str),
        }
    }
}

/// Render a conversation the way the mock's "chat template" does: one `<|role|>` header per
/// message and a trailing assistant header. `/chat_tokenize` returns this text.
pub fn chat_template(messages: &[Message]) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str("<|");
        s.push_str(&m.role);
        s.push_str("|>\n");
        s.push_str(&m.text());
        s.push('\n');
    }
    s.push_str("<|assistant|>\n");
    s
}

/// What echo mode answers to a conversation: the messages' texts joined by newlines.
pub fn chat_echo_text(messages: &[Message]) -> String {
    messages
        .iter()
        .map(Message::text)
        .collect::<Vec<_>>()
        .join("\n")
}
