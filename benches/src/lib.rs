//! Portcullis bench harness and `mock-tgi`.
//!
//! `mock-tgi` is a small server that speaks Text Generation Inference's HTTP API (the routes and
//! payloads of TGI's own OpenAPI document, `benches/data/tgi-openapi.json`). It backs the gateway's
//! tests, benchmarks and the `make run` demo: echo mode shows exactly what reached the backend,
//! script mode answers from a file, and a request header injects faults per request.

pub mod mock;
pub mod redis;
