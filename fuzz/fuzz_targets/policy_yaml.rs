//! Arbitrary policy files: errors, never panics.
#![no_main]

use std::path::Path;

use filters::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Policy::parse(Path::new("/nonexistent/fuzz.yaml"), s);
    }
});
