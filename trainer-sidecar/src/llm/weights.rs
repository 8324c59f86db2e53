//! The weights of a Hugging Face checkpoint directory: `model.safetensors`, or shards named by
//! `model.safetensors.index.json`. Every tensor is converted to the element type the decoder
//! runs in; a tensor the decoder does not take is an error (a checkpoint of another layout
//! would otherwise load "successfully" and compute something else).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::LlmError;

/// Tensors of a checkpoint by name, taken one by one by the decoder.
#[derive(Debug)]
pub struct Weights {
    dir: PathBuf,
    tensors: BTreeMap<String, Tensor>,
}

/// The safetensors files of a checkpoint directory.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, LlmError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(LlmError::Config {
            file: dir.to_path_buf(),
            msg: "no model.safetensors and no model.safetensors.index.json (only safetensors \
                  checkpoints are read)"
                .into(),
        });
    }
    let text = std::fs::read_to_string(&index).map_err(|e| LlmError::Io(index.clone(), e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| LlmError::Config {
        file: index.clone(),
        msg: format!("not JSON: {e}"),
    })?;
    let Some(map) = v.get("weight_map").and_then(|m| m.as_object()) else {
        return Err(LlmError::Config {
            file: index,
            msg: "`weight_map`: missing or not an object".into(),
        });
    };
    let mut names = BTreeSet::new();
    for (tensor, f) in map {
        let Some(f) = f.as_str() else {
            return Err(LlmError::Config {
                file: index,
                msg: format!("`weight_map.{tensor}`: expected a file name"),
            });
        };
        // a shard is a file beside the index, never a path elsewhere
        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
            return Err(LlmError::Config {
                file: index,
                msg: format!("`weight_map.{tensor}`: `{f}` is not a file name in this folder"),
            });
        }
        names.insert(f.to_string());
    }
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

impl Weights {
    /// Read every tensor of the checkpoint in `dir`, as `kind`, onto `device`.
    pub fn load(dir: &Path, kind: Kind, device: Device) -> Result<Weights, LlmError> {
        let mut tensors = BTreeMap::new();
        for f in files(dir)? {
            let read = Tensor::read_safetensors(&f).map_err(|e| LlmError::Weights {
                file: f.clone(),
                msg: e.to_string(),
            })?;
            for (name, t) in read {
                let t = t.f_to_kind(kind)?.f_to_device(device)?;
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(LlmError::Weights {
                        file: f.clone(),
                        msg: format!("tensor `{name}` appears in more than one shard"),
                    });
                }
            }
        }
        Ok(Weights {
            dir: dir.to_path_buf(),
            tensors,
        })
    }

    /// Take `name`, which must have `shape`.
    pub fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, LlmError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| LlmError::MissingTensor {
                dir: self.dir.clone(),
                name: name.to_string(),
            })?;
        check(name, &t, shape)?;
        Ok(t)
    }

    /// Take `name` if the checkpoint has it (it must then have `shape`).
    pub fn take_opt(&mut self, name: &str, shape: &[i64]) -> Result<Option<Tensor>, LlmError> {
        match self.tensors.remove(name) {
            Some(t) => {
                check(name, &t, shape)?;
                Ok(Some(t))
            }
            None => Ok(None),
        }
    }

    /// Fail on tensors nothing took.
    pub fn finish(self) -> Result<(), LlmError> {
        match self.tensors.keys().next() {
            None => Ok(()),
            Some(first) => Err(LlmError::Weights {
                file: self.dir,
                msg: format!(
                    "{} tensor(s) the decoder does not use, first `{first}`: the checkpoint has \
                     another layout than its config.json says",
                    self.tensors.len()
                ),
            }),
        }
    }
}

fn check(name: &str, t: &Tensor, shape: &[i64]) -> Result<(), LlmError> {
    if t.size() == shape {
        Ok(())
    } else {
        Err(LlmError::Shape {
            name: name.to_string(),
            expected: shape.to_vec(),
            got: t.size(),
        })
    }
}
