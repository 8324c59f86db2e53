//! Request payloads of TGI's API, as the mock reads them.
//!
//! Only the fields the mock acts on are typed; like TGI's router, unknown sampling fields are
//! accepted and ignored. Responses are built with `serde_json::json!` in `routes.rs`, field for
//! field as TGI's OpenAPI document names them.

use serde::Deserialize;
use serde_json::Value;

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
    /// Tool definitions (rendered into the prompt as TGI does).
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required`, or `{"type": "function", "function": {"name": ...}}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// TGI's text introducing the tools (a default when absent or empty).
    #[serde(default)]
    pub tool_prompt: Option<String>,
}

/// TGI's default `tool_prompt`.
pub const DEFAULT_TOOL_PROMPT: &str = "\nGiven the functions available, please respond with a JSON for a function call with its proper arguments that best answers the given prompt. Respond in the format {name: function name, parameters: dictionary of argument name and its value}.Do not use variables.\n";

impl ChatRequest {
    /// The tool the answer must call: the named one, or the first one when `required`.
    /// `None` when there are no tools or the model may answer in text.
    pub fn forced_tool(&self) -> Option<String> {
        let tools = self.tools.as_ref()?;
        let name_of = |t: &Value| {
            t.pointer("/function/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match &self.tool_choice {
            Some(Value::String(s)) if s == "required" => tools.first().and_then(name_of),
            Some(Value::Object(o)) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        }
    }

    /// What TGI appends to the last message when the chat template does not render tools
    /// itself: `"\n---\n"`, the tools as JSON (`{description, name, arguments}` with the
    /// parameters as a JSON string; `auto` adds TGI's `no_tool` tool), then the tool prompt.
    pub fn tools_text(&self) -> Option<String> {
        let tools = self.tools.as_ref().filter(|t| !t.is_empty())?;
        if matches!(&self.tool_choice, Some(Value::String(s)) if s == "none") {
            return None;
        }
        let mut defs: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = t.get("function").cloned().unwrap_or(Value::Null);
                serde_json::json!({"type": "function", "function": {
                    "description": f.get("description").cloned().unwrap_or(Value::Null),
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": f.get("parameters").map(|p| p.to_string()).unwrap_or_else(|| "{}".into()),
                }})
            })
            .collect();
        let auto = self.tool_choice.is_none()
            || matches!(&self.tool_choice, Some(Value::String(s)) if s == "auto");
        if auto {
            defs.push(serde_json::json!({"type": "function", "function": {"description": "Open ended response with no specific tool selected", "name": "no_tool", "arguments": "{\"type\":\"object\"}"}}));
        }
        let prompt = self
            .tool_prompt
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_TOOL_PROMPT);
        Some(format!(
            "\n---\n{}\n{prompt}",
            serde_json::to_string(&defs).unwrap_or_default()
        ))
    }

    /// The messages' texts as TGI renders them, the tools appended to the last one.
    pub fn texts(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .messages
            .iter()
            .map(|m| (m.role.clone(), m.text()))
            .collect();
        if let (Some(t), Some(last)) = (self.tools_text(), out.last_mut())
            && self.messages.last().is_some_and(|m| m.content.is_some())
        {
            last.1.push_str(&t);
        }
        out
    }
}

/// `stream_options` of the OpenAI routes.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with token usage before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// One chat message. TGI keeps `role` and `content` (or, without content, the tool calls as
/// JSON); `name` and `tool_call_id` never reach its template.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or a list of content parts; absent for some tool-call messages.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// An assistant's tool calls (used only when there is no content, as TGI does).
    #[serde(default)]
    pub tool_calls: Option<Value>,
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
    /// The image of an `image_url` part.
    pub image_url: Option<ImageUrl>,
}

/// `{"url": ...}` of an image part.
#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    /// The URL (or `data:` URI).
    pub url: String,
}

impl Message {
    /// The message's text as TGI renders it: text parts concatenated with `""`, an image as
    /// the markdown text `![](url)`; without content, the tool calls as JSON.
    pub fn text(&self) -> String {
        match &self.content {
            None => self
                .tool_calls
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text, &p.image_url) {
                    ("text", Some(t), _) => t.clone(),
                    ("image_url", _, Some(img)) => format!("![]({})", img.url),
                    _ => String::new(),
                })
                .collect(),
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
pub fn chat_template(req: &ChatRequest) -> String {
    let mut s = String::new();
    for (role, text) in req.texts() {
        s.push_str("<|");
        s.push_str(&role);
        s.push_str("|>\n");
        s.push_str(&text);
        s.push('\n');
    }
    s.push_str("<|assistant|>\n");
    s
}

/// What echo mode answers to a conversation: the messages' texts (as rendered) joined by
/// newlines.
pub fn chat_echo_text(req: &ChatRequest) -> String {
    req.texts()
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n")
}
