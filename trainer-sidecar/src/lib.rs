//! The Portcullis trainer sidecar.
//!
//! Fine-tunes models with differential privacy on libtorch (through `tch`), accounts the privacy
//! budget and signs what it produces. This crate is the library behind the `trainer-sidecar`
//! binary; the modules grow with the privacy engine (accountants, DP-SGD) and the job API.

pub mod accountants;
pub mod engine;
pub mod ledger;
pub mod runtime;
pub mod train;
