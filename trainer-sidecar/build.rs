//! Embed libtorch's library directory as an rpath in every binary and test of this crate.
//!
//! torch-sys links against libtorch but its rpath does not reach our final binaries, which would
//! then need `LD_LIBRARY_PATH` to start. torch-sys publishes the directory as
//! `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"` metadata) to crates that depend on it directly.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) if !dir.is_empty() => {
            // `rustc-link-arg` applies to every linked target of the package: bins, tests,
            // examples and benches.
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            // libtorch_cpu needs libcudart/libcupti from the nvidia wheels even on CPU; the torch
            // libraries find them through their own $ORIGIN-relative rpaths.
        }
        _ => println!(
            "cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: binaries will need LD_LIBRARY_PATH \
             to find libtorch (run scripts/setup.sh so LIBTORCH points at the venv's torch)"
        ),
    }
}
