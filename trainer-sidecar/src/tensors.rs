//! safetensors files of f32 tensors: what the sidecar writes (heads, adapters, checkpoints).

use std::collections::HashMap;
use std::path::Path;

use tch::Tensor;

/// Why tensors could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    /// libtorch refused a conversion.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The safetensors encoding failed.
    #[error("safetensors: {0}")]
    Format(#[from] safetensors::SafeTensorError),
    /// The file could not be written or read.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// Write `tensors` (converted to f32, contiguous) to `path` with header `metadata`, through a
/// temporary file renamed into place (a reader never sees half a file).
pub fn write_f32(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &[(&str, &str)],
) -> Result<(), TensorFileError> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let flat = t
            .f_detach()?
            .f_to_kind(tch::Kind::Float)?
            .f_to_device(tch::Device::Cpu)?
            .f_flatten(0, -1)?;
        let v: Vec<f32> = Vec::try_from(&flat)?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        bufs.push((
            name.clone(),
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let views = bufs
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bytes = safetensors::tensor::serialize(views, Some(meta))?;
    let tmp = path.with_extension("safetensors.tmp");
    let shown = || path.display().to_string();
    std::fs::write(&tmp, bytes).map_err(|e| TensorFileError::Io(shown(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| TensorFileError::Io(shown(), e))
}

/// Every tensor of a safetensors file, by name.
pub fn read(path: &Path) -> Result<HashMap<String, Tensor>, TensorFileError> {
    Ok(Tensor::read_safetensors(path)?.into_iter().collect())
}
