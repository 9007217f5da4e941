//! Model signatures: input and output names, dtypes and shapes, and input validation.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::TensorView;

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Always this size.
    Fixed(usize),
    /// Any size; a symbolic name (`batch`) ties dimensions that must agree across inputs.
    Dynamic(Option<String>),
}

impl Dim {
    /// The fixed size, or `None` for a dynamic dimension.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Dynamic(_) => None,
        }
    }

    /// The size as the C ABI and ONNX report it: -1 for dynamic.
    pub fn as_i64(&self) -> i64 {
        self.fixed().map_or(-1, |n| n as i64)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(Some(name)) => f.write_str(name),
            Dim::Dynamic(None) => f.write_str("?"),
        }
    }
}

/// Spec files write a dim as a number, a name (dynamic) or null (dynamic, unnamed).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum DimRepr {
    Fixed(usize),
    Named(String),
    Unnamed(Option<()>),
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => DimRepr::Fixed(*n),
            Dim::Dynamic(Some(name)) => DimRepr::Named(name.clone()),
            Dim::Dynamic(None) => DimRepr::Unnamed(None),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match DimRepr::deserialize(d)? {
            DimRepr::Fixed(n) => Dim::Fixed(n),
            DimRepr::Named(name) => Dim::Dynamic(Some(name)),
            DimRepr::Unnamed(_) => Dim::Dynamic(None),
        })
    }
}

/// Name, dtype and shape of one model input or output. `None` means the model does not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The name the model gives it.
    pub name: String,
    /// Element type, when known.
    #[serde(default, with = "dtype_name")]
    pub dtype: Option<DType>,
    /// Dimensions, when known.
    #[serde(default)]
    pub shape: Option<Vec<Dim>>,
}

impl TensorSpec {
    /// A spec with a known dtype and shape.
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec { name: name.into(), dtype: Some(dtype), shape: Some(shape) }
    }

    /// A spec that knows only the name.
    pub fn unknown(name: impl Into<String>) -> TensorSpec {
        TensorSpec { name: name.into(), dtype: None, shape: None }
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        match self.dtype {
            Some(d) => write!(f, "{d}")?,
            None => f.write_str("?dtype")?,
        }
        match &self.shape {
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
                write!(f, "[{}]", dims.join(", "))
            }
            None => f.write_str("[?shape]"),
        }
    }
}

mod dtype_name {
    use super::DType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<DType>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(d.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DType>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(name) => name.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// The inputs and outputs of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Inputs, in the order positional inputs are given.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the order the model returns them (may be left out of a spec file).
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
}

/// Inputs to a run: by position (signature order) or by name (any order).
#[derive(Debug, Clone)]
pub enum Inputs<'a> {
    /// One tensor per signature input, in signature order.
    Positional(Vec<TensorView<'a>>),
    /// Tensors with the input names they are for.
    Named(Vec<(&'a str, TensorView<'a>)>),
}

impl Signature {
    /// Reads a sidecar spec file (JSON; see the README for its format).
    pub fn from_spec_file(path: &Path) -> Result<Signature> {
        let text = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        Signature::from_spec_json(&text, path)
    }

    /// Parses spec JSON held in memory, with the same checks as [`Signature::from_spec_file`];
    /// `origin` names it in errors, which are [`Error::File`].
    pub fn from_spec_json(json: &[u8], origin: &Path) -> Result<Signature> {
        serde_json::from_slice(json).map_err(|e| Error::file(origin, format!("invalid spec file: {e}")))
    }

    /// Names of the outputs, or `output_0`, `output_1`... for `count` unnamed outputs.
    pub fn output_names(&self, count: usize) -> Vec<String> {
        if self.outputs.len() == count {
            self.outputs.iter().map(|o| o.name.clone()).collect()
        } else {
            (0..count).map(|i| format!("output_{i}")).collect()
        }
    }

    /// Checks `inputs` against the signature and returns them in signature order.
    ///
    /// Every mismatch is an [`Error::InvalidInput`] naming the input and saying expected vs
    /// found: count, unknown, missing or repeated name, dtype, rank, a fixed dimension, and a
    /// named dynamic dimension (`batch`) that differs between inputs.
    pub fn bind<'a>(&self, inputs: Inputs<'a>) -> Result<Vec<TensorView<'a>>> {
        let ordered = match inputs {
            Inputs::Positional(views) => views,
            Inputs::Named(named) => self.order_named(named)?,
        };
        self.check(&ordered)?;
        Ok(ordered)
    }

    /// Checks inputs given in signature order, with the errors of [`Signature::bind`]; allocates
    /// nothing unless it fails.
    pub fn check(&self, views: &[TensorView<'_>]) -> Result<()> {
        if self.fits(views) {
            return Ok(());
        }
        self.explain(views)
    }

    /// Whether `views` certainly pass [`Signature::check`]: the fast path of every run, with no
    /// formatting code in it. A named dynamic dimension after the first input (which must match
    /// the earlier inputs) is left to [`Signature::explain`].
    fn fits(&self, views: &[TensorView<'_>]) -> bool {
        views.len() == self.inputs.len()
            && self.inputs.iter().zip(views).enumerate().all(|(index, (spec, view))| {
                spec.dtype.is_none_or(|d| d == view.dtype())
                    && spec.shape.as_ref().is_none_or(|dims| {
                        dims.len() == view.shape().len()
                            && dims.iter().zip(view.shape()).all(|(dim, &size)| match dim {
                                Dim::Fixed(n) => *n == size,
                                Dim::Dynamic(None) => true,
                                Dim::Dynamic(Some(_)) => index == 0,
                            })
                    })
            })
    }

    /// [`Signature::check`] one check at a time, with its errors.
    #[cold]
    fn explain(&self, views: &[TensorView<'_>]) -> Result<()> {
        if views.len() != self.inputs.len() {
            let names: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::InvalidInput {
                input: None,
                message: format!(
                    "expected {} input(s) ({}), got {}",
                    self.inputs.len(),
                    names.join(", "),
                    views.len()
                ),
            });
        }
        for (index, (spec, view)) in self.inputs.iter().zip(views).enumerate() {
            check_one(spec, view)?;
            check_symbols(&self.inputs[..index], &views[..index], spec, view)?;
        }
        Ok(())
    }

    pub(crate) fn order_named<'a>(
        &self,
        named: Vec<(&'a str, TensorView<'a>)>,
    ) -> Result<Vec<TensorView<'a>>> {
        let mut slots: Vec<Option<TensorView<'a>>> = vec![None; self.inputs.len()];
        for (name, view) in named {
            let Some(index) = self.inputs.iter().position(|s| s.name == name) else {
                let known: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::invalid_input(
                    name,
                    format!("unknown input name; the model's inputs are: {}", known.join(", ")),
                ));
            };
            if slots[index].replace(view).is_some() {
                return Err(Error::invalid_input(name, "given more than once"));
            }
        }
        self.inputs
            .iter()
            .zip(slots)
            .map(|(spec, slot)| {
                slot.ok_or_else(|| Error::invalid_input(&spec.name, "missing: no tensor given for it"))
            })
            .collect()
    }
}

fn check_one(spec: &TensorSpec, view: &TensorView<'_>) -> Result<()> {
    let name = spec.name.as_str();
    if let Some(dtype) = spec.dtype {
        if dtype != view.dtype() {
            return Err(Error::invalid_input(name, format!("expected dtype {dtype}, got {}", view.dtype())));
        }
    }
    let Some(dims) = &spec.shape else { return Ok(()) };
    let shape = view.shape();
    if dims.len() != shape.len() {
        return Err(Error::invalid_input(
            name,
            format!("expected rank {} {}, got rank {} {shape:?}", dims.len(), spec_shape(dims), shape.len()),
        ));
    }
    for (axis, (dim, &size)) in dims.iter().zip(shape).enumerate() {
        match dim {
            Dim::Fixed(n) if *n != size => {
                return Err(Error::invalid_input(
                    name,
                    format!(
                        "expected dimension {axis} to be {n} (shape {}), got {size} (shape {shape:?})",
                        spec_shape(dims)
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that each named dynamic dim of `view` equals the same name's size in the inputs bound
/// before it. Scans instead of keeping a map: signatures have a handful of inputs, and `run`
/// should not allocate for this.
fn check_symbols(
    earlier_specs: &[TensorSpec],
    earlier_views: &[TensorView<'_>],
    spec: &TensorSpec,
    view: &TensorView<'_>,
) -> Result<()> {
    let Some(dims) = &spec.shape else { return Ok(()) };
    for (axis, (dim, &size)) in dims.iter().zip(view.shape()).enumerate() {
        let Dim::Dynamic(Some(symbol)) = dim else { continue };
        for (other, other_view) in earlier_specs.iter().zip(earlier_views) {
            let Some(other_dims) = &other.shape else { continue };
            let seen = other_dims
                .iter()
                .zip(other_view.shape())
                .find(|(d, _)| matches!(d, Dim::Dynamic(Some(s)) if s == symbol))
                .map(|(_, &n)| n);
            if let Some(seen) = seen {
                if seen != size {
                    return Err(Error::invalid_input(
                        &spec.name,
                        format!(
                            "dimension {axis} (\"{symbol}\") is {size}, but input \"{}\" has {symbol} = {seen}",
                            other.name
                        ),
                    ));
                }
                break;
            }
        }
    }
    Ok(())
}

fn spec_shape(dims: &[Dim]) -> String {
    let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn sig() -> Signature {
        let batch = || Dim::Dynamic(Some("batch".into()));
        Signature {
            inputs: vec![
                TensorSpec::new("ids", DType::I64, vec![batch(), Dim::Dynamic(None)]),
                TensorSpec::new("x", DType::F32, vec![batch(), Dim::Fixed(4)]),
            ],
            outputs: vec![TensorSpec::new("y", DType::F32, vec![batch(), Dim::Fixed(2)])],
        }
    }

    fn message(result: Result<Vec<TensorView<'_>>>) -> String {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        err.to_string()
    }

    #[test]
    fn named_inputs_are_reordered_and_checked() {
        let ids = [1i64, 2, 3];
        let x = [0f32; 4];
        let ids_v = TensorView::from_slice(&[1, 3], &ids).unwrap();
        let x_v = TensorView::from_slice(&[1, 4], &x).unwrap();
        let bound = sig().bind(Inputs::Named(vec![("x", x_v), ("ids", ids_v)])).unwrap();
        assert_eq!(bound[0].dtype(), DType::I64);

        let m = message(sig().bind(Inputs::Named(vec![("x", x_v), ("idz", ids_v)])));
        assert_eq!(m, "invalid input: input \"idz\": unknown input name; the model's inputs are: ids, x");
        let m = message(sig().bind(Inputs::Named(vec![("x", x_v)])));
        assert_eq!(m, "invalid input: input \"ids\": missing: no tensor given for it");
        let m = message(sig().bind(Inputs::Named(vec![("x", x_v), ("x", x_v)])));
        assert_eq!(m, "invalid input: input \"x\": given more than once");
    }

    #[test]
    fn each_mismatch_names_input_and_expected_vs_found() {
        let ids = [1i64, 2, 3, 4, 5, 6];
        let x = [0f32; 8];
        let xi = [0i32; 4];
        let ids_v = TensorView::from_slice(&[1, 3], &ids[..3]).unwrap();
        let m = message(sig().bind(Inputs::Positional(vec![ids_v])));
        assert_eq!(m, "invalid input: expected 2 input(s) (ids, x), got 1");

        let bad_dtype = TensorView::from_slice(&[1, 4], &xi).unwrap();
        let m = message(sig().bind(Inputs::Positional(vec![ids_v, bad_dtype])));
        assert_eq!(m, "invalid input: input \"x\": expected dtype f32, got i32");

        let bad_rank = TensorView::from_slice(&[4], &x[..4]).unwrap();
        let m = message(sig().bind(Inputs::Positional(vec![ids_v, bad_rank])));
        assert_eq!(m, "invalid input: input \"x\": expected rank 2 [batch, 4], got rank 1 [4]");

        let bad_dim = TensorView::from_slice(&[1, 8], &x).unwrap();
        let m = message(sig().bind(Inputs::Positional(vec![ids_v, bad_dim])));
        assert_eq!(
            m,
            "invalid input: input \"x\": expected dimension 1 to be 4 (shape [batch, 4]), got 8 (shape [1, 8])"
        );

        let batch2 = TensorView::from_slice(&[2, 4], &x).unwrap();
        let m = message(sig().bind(Inputs::Positional(vec![ids_v, batch2])));
        assert_eq!(
            m,
            "invalid input: input \"x\": dimension 0 (\"batch\") is 2, but input \"ids\" has batch = 1"
        );
    }

    #[test]
    fn spec_files_parse_dims_and_report_bad_dtypes() {
        let s: Signature = serde_json::from_str(
            r#"{"inputs":[{"name":"a","dtype":"float32","shape":["n",3,null]}],
                "outputs":[{"name":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(s.inputs[0].to_string(), "a: f32[n, 3, ?]");
        assert_eq!(s.outputs[0].to_string(), "b: ?dtype[?shape]");
        let err =
            serde_json::from_str::<Signature>(r#"{"inputs":[{"name":"a","dtype":"f33"}]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown dtype \"f33\""), "{err}");
        assert_eq!(s.output_names(1), vec!["b"]);
        assert_eq!(s.output_names(2), vec!["output_0", "output_1"]);
    }
}
