//! Facts about the libtorch runtime this process linked against.
//!
//! `trainer-sidecar info` prints them; tests use them to prove the binary found libtorch on its
//! own (rpath), without `LD_LIBRARY_PATH`. It also tunes glibc's allocator for libtorch's CPU
//! tensors ([`tune_allocator`]).

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// A snapshot of the torch runtime: what the trainer would train on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuntimeInfo {
    /// Whether libtorch sees a usable CUDA device.
    pub cuda_available: bool,
    /// Number of CUDA devices libtorch sees.
    pub cuda_devices: usize,
    /// The device training would use by default (`cpu` or `cuda:0`).
    pub default_device: String,
    /// libtorch's intra-op thread count.
    pub intra_op_threads: i32,
    /// Whether [`tune_allocator`] took effect in this process.
    pub allocator_tuned: bool,
    /// Result of a small matrix product computed by libtorch, as a liveness check
    /// (`[[1,2],[3,4]] @ [[1,0],[0,1]]` summed: 10).
    pub smoke_test_sum: f64,
}

/// Errors from probing the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// libtorch returned an error for a basic tensor operation.
    #[error("libtorch failed a basic tensor operation: {0}")]
    Torch(#[from] tch::TchError),
}

/// Probe the linked libtorch: devices, threads, and one real computation.
pub fn probe() -> Result<RuntimeInfo, RuntimeError> {
    let cuda_available = tch::Cuda::is_available();
    let cuda_devices = if cuda_available {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    };
    let device = Device::cuda_if_available();
    let a = Tensor::f_from_slice(&[1.0f32, 2.0, 3.0, 4.0])?
        .f_reshape([2, 2])?
        .f_to_device(device)?;
    let eye = Tensor::f_eye(2, (Kind::Float, device))?;
    let sum = a.f_matmul(&eye)?.f_sum(Kind::Double)?.f_double_value(&[])?;
    Ok(RuntimeInfo {
        cuda_available,
        cuda_devices,
        default_device: match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".to_string(),
        },
        intra_op_threads: tch::get_num_threads(),
        allocator_tuned: TUNED.load(Ordering::Relaxed),
        smoke_test_sum: sum,
    })
}

/// glibc's mmap threshold while tuned: its maximum on 64-bit (32 MiB).
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the top of the heap that glibc keeps instead of returning it (1 GiB).
pub const TRIM_THRESHOLD: usize = 1 << 30;

static TUNED: AtomicBool = AtomicBool::new(false);

/// Keep freed tensor memory in the process between training steps.
///
/// libtorch allocates CPU tensors with glibc's `malloc`. glibc serves blocks above its mmap
/// threshold (128 KiB at first, adapting up to 32 MiB) with fresh pages from the kernel, and
/// returns a free heap top above the trim threshold (128 KiB) to the kernel. A training step
/// allocates and frees the same activation and gradient buffers every time, so by default each
/// step page-faults and zeroes memory it has just given back: about 9,000 faults a step on the
/// transformer stack of `benches/dp` (`perf stat -e page-faults`), whose `auto` DP step runs
/// 1.23x faster tuned (benches/RESULTS.md).
/// Fixing the mmap threshold at [`MMAP_THRESHOLD`] and the trim threshold at [`TRIM_THRESHOLD`]
/// keeps those buffers in the heap. Peak memory does not change; memory freed after a job stays
/// mapped until [`release_free_memory`]. Call it first thing in `main`. Returns whether glibc
/// accepted the settings (false on other C libraries: nothing changes there).
pub fn tune_allocator() -> bool {
    let ok = set_thresholds();
    TUNED.store(ok, Ordering::Relaxed);
    ok
}

/// Give the heap's free memory back to the kernel (after a job, when the process idles).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks and takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    let (Ok(mmap), Ok(trim)) = (
        libc::c_int::try_from(MMAP_THRESHOLD),
        libc::c_int::try_from(TRIM_THRESHOLD),
    ) else {
        return false;
    };
    // Both or neither: setting either turns off glibc's dynamic thresholds, and the trim
    // threshold alone leaves the mmap threshold at 128 KiB (7x the faults of the default on
    // that bench). mallopt returns 1 on success.
    #[allow(unsafe_code)]
    // SAFETY: mallopt takes two integers, changes allocator parameters under glibc's own lock
    // and is documented as safe to call at any time; it touches no Rust-owned memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_computes_on_libtorch() {
        let info = probe().expect("libtorch probe");
        assert_eq!(info.smoke_test_sum, 10.0);
        assert!(info.intra_op_threads >= 1);
        assert_eq!(info.cuda_available, info.cuda_devices > 0);
    }

    #[test]
    fn glibc_accepts_the_allocator_settings() {
        // Both values are within what mallopt accepts on 64-bit glibc (a refused value returns 0).
        assert_eq!(
            tune_allocator(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
        release_free_memory();
    }
}
