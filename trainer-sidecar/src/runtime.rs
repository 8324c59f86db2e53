//! Facts about the libtorch runtime this process linked against.
//!
//! `trainer-sidecar info` prints them; tests use them to prove the binary found libtorch on its
//! own (rpath), without `LD_LIBRARY_PATH`.

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
        smoke_test_sum: sum,
    })
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
}
