//! The Portcullis trainer sidecar.
//!
//! Fine-tunes models with differential privacy on libtorch (through `tch`), accounts the privacy
//! budget and signs what it produces. This crate is the library behind the `trainer-sidecar`
//! binary:
//!
//! - [`accountants`], [`engine`], [`ledger`]: the privacy engine (RDP/PRV accounting, DP-SGD
//!   with per-example clipping, the per-dataset budget);
//! - [`llm`]: Llama/Qwen2 decoders from Hugging Face checkpoints with LoRA adapters;
//! - [`finetune`] (DP LoRA jobs) and [`train`] (DP classifier heads), with [`guard`] (the data
//!   guard) and [`plot`];
//! - [`jobs`] (the queue, job folders, resume) and [`serve`] (the HTTP API);
//! - [`audit`]: the one-run empirical privacy audit.

pub mod accountants;
pub mod audit;
pub mod engine;
pub mod finetune;
pub mod guard;
pub mod jobs;
pub mod ledger;
pub mod llm;
pub mod plot;
pub mod runtime;
pub mod serve;
pub mod tensors;
pub mod train;
