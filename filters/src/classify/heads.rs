//! Classifier heads: small MLPs (linear layers, ReLU between) on the encoder's features,
//! read from safetensors. Evaluated in plain Rust: a 2304→256→1 head is ~0.6 M multiply-adds,
//! a few hundred microseconds at most, and needs no second ONNX session.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::ModelError;
use super::bundle::HeadSpec;

/// One linear layer, row-major `[out, in]` weights.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Layer {
    pub(crate) fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            self.weight
                .chunks_exact(self.inputs)
                .zip(&self.bias)
                .map(|(row, b)| dot(row, x) + b),
        );
    }

    /// This layer on every row of `x` (rows of `inputs` values; a trailing partial row is
    /// ignored) in one matrix product, leaving `[rows, outputs]` row-major in `out`.
    /// `matrixmultiply` picks its AVX2/FMA kernels at run time, where a row at a time would
    /// stream the whole weight matrix once per row.
    pub(crate) fn apply_rows(&self, x: &[f32], out: &mut Vec<f32>) {
        let (k, m) = (self.inputs, self.bias.len());
        let n = x.len().checked_div(k).unwrap_or(0);
        out.clear();
        for _ in 0..n {
            out.extend_from_slice(&self.bias);
        }
        if n == 0 || m == 0 {
            return;
        }
        debug_assert_eq!(self.weight.len(), m * k);
        // SAFETY: `x` holds at least n·k values read as an [n, k] matrix with row stride k;
        // `weight` holds m·k values (checked at load: shape [m, k]) read as its transpose
        // [k, m] (row stride 1, column stride k); `out` holds exactly n·m values written as
        // [n, m] with row stride m. No pointer is read or written past those bounds, and
        // `out` does not alias the inputs.
        #[allow(unsafe_code)]
        unsafe {
            matrixmultiply::sgemm(
                n,
                k,
                m,
                1.0,
                x.as_ptr(),
                k as isize,
                1,
                self.weight.as_ptr(),
                1,
                k as isize,
                1.0,
                out.as_mut_ptr(),
                m as isize,
                1,
            );
        }
    }
}

/// Dot product in 8 independent lanes (lets the compiler vectorise it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// A loaded head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Head name (`injection`).
    pub name: String,
    /// Decision threshold on the logit, as calibrated in the bundle.
    pub threshold_logit: f64,
    /// Other calibrated thresholds (logits) by operating point name (`strict`).
    pub operating_points: std::collections::BTreeMap<String, f64>,
    layers: Vec<Layer>,
}

impl Head {
    /// Load a head from its safetensors file, checking shapes against the feature width.
    pub fn load(spec: &HeadSpec, path: &Path, features: usize) -> Result<Head, ModelError> {
        let raw = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let st = SafeTensors::deserialize(&raw).map_err(|e| ModelError::Head {
            head: spec.name.clone(),
            message: format!("{}: {e}", path.display()),
        })?;
        let bad = |message: String| ModelError::Head {
            head: spec.name.clone(),
            message,
        };
        if spec.activation != "sigmoid" {
            return Err(bad(format!(
                "activation `{}` is not supported (only `sigmoid`)",
                spec.activation
            )));
        }
        let (layers, width) =
            load_layers(&st, &spec.tensors, &spec.kind, features, 1).map_err(&bad)?;
        if width != 1 {
            return Err(bad(format!(
                "the last layer has {width} outputs; expected 1"
            )));
        }
        if !spec.threshold_logit.is_finite() {
            return Err(bad("threshold_logit is not a finite number".into()));
        }
        if let Some((name, _)) = spec.operating_points.iter().find(|(_, t)| !t.is_finite()) {
            return Err(bad(format!(
                "operating point `{name}` is not a finite number"
            )));
        }
        Ok(Head {
            name: spec.name.clone(),
            threshold_logit: spec.threshold_logit,
            operating_points: spec.operating_points.clone(),
            layers,
        })
    }

    /// The threshold (logit) of a named operating point, or the bundle's default one.
    pub fn threshold_at(&self, point: Option<&str>) -> f64 {
        point
            .and_then(|p| self.operating_points.get(p))
            .copied()
            .unwrap_or(self.threshold_logit)
    }

    /// The head's logit for one feature vector.
    pub fn logit(&self, features: &[f32]) -> f32 {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        forward(&self.layers, features, &mut a, &mut b);
        a.first().copied().unwrap_or(f32::NEG_INFINITY)
    }
}

/// The layers `<tensors>.<i>.weight`/`.bias` (`mlp`, ReLU between) or `<tensors>.weight`/`.bias`
/// (`linear`) of a safetensors file, checked to chain from `features` inputs; with the width of
/// the last layer.
/// The last layer reads `last_span` times the width before it (an entity head's output layer
/// reads the hidden units of a token and its neighbours; 1 for a sequence head).
pub(crate) fn load_layers(
    st: &SafeTensors<'_>,
    tensors: &str,
    kind: &str,
    features: usize,
    last_span: usize,
) -> Result<(Vec<Layer>, usize), String> {
    let names: Vec<String> = match kind {
        "linear" => vec![tensors.to_string()],
        "mlp" => {
            // Layer indices as nn.Sequential numbers them: 0, 2, 4 (ReLUs between).
            let prefix = format!("{tensors}.");
            let mut idx: Vec<u32> = st
                .names()
                .iter()
                .filter_map(|n| {
                    n.strip_prefix(&prefix)?
                        .strip_suffix(".weight")?
                        .parse()
                        .ok()
                })
                .collect();
            idx.sort_unstable();
            idx.into_iter().map(|i| format!("{tensors}.{i}")).collect()
        }
        k => return Err(format!("kind `{k}` is not supported (`mlp` or `linear`)")),
    };
    if names.is_empty() {
        return Err(format!("no tensors named `{tensors}.*`"));
    }
    let mut layers = Vec::new();
    let mut width = features;
    for (i, n) in names.iter().enumerate() {
        if i + 1 == names.len() && i > 0 {
            width *= last_span;
        }
        let (w, wshape) = tensor(st, &format!("{n}.weight"))?;
        let (b, bshape) = tensor(st, &format!("{n}.bias"))?;
        if wshape.len() != 2 || wshape[1] != width || bshape != [wshape[0]] {
            return Err(format!(
                "layer `{n}` has weight {wshape:?} and bias {bshape:?}; expected [_, {width}] and [_]"
            ));
        }
        width = wshape[0];
        layers.push(Layer {
            weight: w,
            bias: b,
            inputs: wshape[1],
        });
    }
    Ok((layers, width))
}

/// Run `layers` on `x` (ReLU between layers), leaving the output in `a`; `b` is scratch.
pub(crate) fn forward(layers: &[Layer], x: &[f32], a: &mut Vec<f32>, b: &mut Vec<f32>) {
    for (i, l) in layers.iter().enumerate() {
        // The first layer reads the input in place; the rest ping-pong two buffers.
        l.apply(if i == 0 { x } else { a }, b);
        if i + 1 < layers.len() {
            for v in b.iter_mut() {
                *v = v.max(0.0);
            }
        }
        std::mem::swap(a, b);
    }
}

/// Run `layers` on every row of `x` (ReLU between layers), leaving `[rows, outputs]` in `a`;
/// `b` is scratch. With `relu_last`, a ReLU follows the last layer too (the hidden part of an
/// MLP).
pub(crate) fn forward_rows(
    layers: &[Layer],
    x: &[f32],
    relu_last: bool,
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
) {
    for (i, l) in layers.iter().enumerate() {
        l.apply_rows(if i == 0 { x } else { a }, b);
        if relu_last || i + 1 < layers.len() {
            for v in b.iter_mut() {
                *v = v.max(0.0);
            }
        }
        std::mem::swap(a, b);
    }
}

fn tensor(st: &SafeTensors<'_>, name: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
    let t = st
        .tensor(name)
        .map_err(|_| format!("tensor `{name}` is missing"))?;
    if t.dtype() != Dtype::F32 {
        return Err(format!("tensor `{name}` is {:?}; expected F32", t.dtype()));
    }
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((data, t.shape().to_vec()))
}

/// Logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Inverse of [`sigmoid`], for thresholds given as probabilities.
pub fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// Write `(name, shape, values)` F32 tensors to a safetensors file (tests of the heads).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: std::collections::HashMap<String, safetensors::tensor::TensorView<'_>> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, shape, _), b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn spec(kind: &str) -> HeadSpec {
        HeadSpec {
            name: "h".into(),
            file: "heads.safetensors".into(),
            tensors: "h".into(),
            kind: kind.into(),
            activation: "sigmoid".into(),
            threshold_logit: 0.0,
            calibration: None,
            operating_points: Default::default(),
        }
    }

    #[test]
    fn mlp_matches_a_hand_computation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("heads.safetensors");
        // 3 → 2 → 1: hidden = relu([1,2,3]·W0 + b0), out = hidden·W2 + b2.
        write_safetensors(
            &p,
            &[
                (
                    "h.0.weight",
                    vec![2, 3],
                    vec![1.0, 0.0, -1.0, 0.5, 0.5, 0.5],
                ),
                ("h.0.bias", vec![2], vec![0.0, -1.0]),
                ("h.2.weight", vec![1, 2], vec![2.0, -1.0]),
                ("h.2.bias", vec![1], vec![0.25]),
            ],
        );
        let h = Head::load(&spec("mlp"), &p, 3).unwrap();
        // hidden = relu([1-3, 0.5*6-1]) = [0, 2]; out = 0*2 + 2*-1 + 0.25 = -1.75
        assert!((h.logit(&[1.0, 2.0, 3.0]) + 1.75).abs() < 1e-6);
    }

    #[test]
    fn shape_mismatches_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("heads.safetensors");
        write_safetensors(
            &p,
            &[
                ("h.weight", vec![1, 4], vec![0.0; 4]),
                ("h.bias", vec![1], vec![0.0]),
            ],
        );
        let e = Head::load(&spec("linear"), &p, 3).unwrap_err().to_string();
        assert!(e.contains("expected [_, 3]"), "{e}");
        let e = Head::load(&spec("mlp"), &p, 4).unwrap_err().to_string();
        assert!(e.contains("no tensors"), "{e}");
        assert!(Head::load(&spec("linear"), &p, 4).is_ok());
    }

    #[test]
    fn a_matrix_product_over_rows_equals_one_row_at_a_time() {
        // odd sizes, so that every kernel's edge handling is exercised
        let (k, m, n) = (37, 11, 5);
        let layer = Layer {
            weight: (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect(),
            bias: (0..m).map(|i| i as f32 * 0.5).collect(),
            inputs: k,
        };
        let x: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5) % 11) as f32 * 0.25 - 1.0)
            .collect();
        let mut rows = Vec::new();
        // a trailing partial row is ignored
        let mut with_tail = x.clone();
        with_tail.extend([1.0, 2.0]);
        layer.apply_rows(&with_tail, &mut rows);
        assert_eq!(rows.len(), n * m);
        let mut one = Vec::new();
        for (r, xr) in x.chunks_exact(k).enumerate() {
            layer.apply(xr, &mut one);
            for (a, b) in one.iter().zip(&rows[r * m..(r + 1) * m]) {
                assert!((a - b).abs() < 1e-3, "row {r}: {a} vs {b}");
            }
        }
        layer.apply_rows(&[], &mut rows);
        assert!(rows.is_empty());
    }

    #[test]
    fn dot_handles_remainders() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let want: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), want);
    }
}
