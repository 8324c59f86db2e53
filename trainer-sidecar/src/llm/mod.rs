//! Llama and Qwen2 decoders on libtorch, loaded from Hugging Face checkpoint directories, with
//! LoRA adapters the DP engine can train and PEFT can load.
//!
//! - [`config`]: `config.json` (both RoPE forms; what the decoder cannot compute is refused).
//! - [`weights`]: safetensors, single or sharded.
//! - [`text`]: `tokenizer.json` and the chat template.
//! - [`model`]: the decoder, LoRA on any of q/k/v/o and gate/up/down.
//! - [`lora`]: the adapter's settings and its PEFT files (`adapter_config.json`,
//!   `adapter_model.safetensors`).
//! - [`data`]: JSONL examples (prompt/completion or chat messages) to token ids with a loss mask.
//!
//! A new decoder family (Mistral, Gemma, Phi) goes into [`config::Arch`] and the few places in
//! [`model`] that match on it (biases, norms, attention); anything the math differs in beyond
//! that is refused at load by `config`, never approximated.

pub mod config;
pub mod data;
pub mod lora;
pub mod model;
pub mod text;
pub mod weights;

use std::path::PathBuf;

pub use config::{Arch, LlmConfig, RopeScaling};
pub use lora::{LoraSpec, Target};
pub use model::{Batch, Decoder};
pub use text::TextCodec;

/// Why a checkpoint, an adapter or a text could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A configuration file says something the decoder cannot honour, or is malformed.
    #[error("{file}: {msg}")]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong, naming the key.
        msg: String,
    },
    /// A file could not be read.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// A safetensors file could not be read, or holds tensors the decoder does not use.
    #[error("{file}: {msg}")]
    Weights {
        /// The file or checkpoint folder.
        file: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The config names a tensor the checkpoint lacks.
    #[error("{dir}: tensor `{name}` is missing")]
    MissingTensor {
        /// The checkpoint folder.
        dir: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor has another shape than the config implies.
    #[error("tensor `{name}` has shape {got:?}, the config implies {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// From the config.
        expected: Vec<i64>,
        /// In the file.
        got: Vec<i64>,
    },
    /// The tokenizer failed.
    #[error("{file}: {msg}")]
    Tokenizer {
        /// The tokenizer file.
        file: PathBuf,
        /// What failed.
        msg: String,
    },
    /// The chat template failed to load or render.
    #[error("chat template: {0}")]
    Template(String),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The DP engine refused the model.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}
