//! Where a run's inputs come from: `NAME=FILE.npy` arguments, a bundled case folder, or
//! tensors generated from the signature with a fixed seed.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rivet::{npy, DType, Dim, Error, Result, Signature, Tensor};

/// One `--input` / `--reference` argument: `NAME=FILE.npy`, or `FILE.npy` for the next position.
#[derive(Debug, Clone)]
pub struct TensorArg {
    /// The input or output name, when given.
    pub name: Option<String>,
    /// The `.npy` file.
    pub path: PathBuf,
}

impl std::str::FromStr for TensorArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.split_once('=') {
            Some(("", _)) => Err(format!("\"{s}\": the name before '=' is empty")),
            Some((_, "")) => Err(format!("\"{s}\": the file after '=' is empty")),
            Some((name, path)) => Ok(TensorArg { name: Some(name.to_owned()), path: path.into() }),
            None => Ok(TensorArg { name: None, path: s.into() }),
        }
    }
}

/// Tensors read from `.npy` files, each with the name it was given (if any).
pub fn read_args(args: &[TensorArg]) -> Result<Vec<(Option<String>, Tensor)>> {
    args.iter().map(|a| Ok((a.name.clone(), npy::read_npy(&a.path)?))).collect()
}

/// A bundled case: `input.NAME.npy` and `output.NAME.npy` files in one folder.
#[derive(Debug)]
pub struct Case {
    /// Named inputs.
    pub inputs: Vec<(String, Tensor)>,
    /// Named reference outputs (PyTorch eager).
    pub outputs: Vec<(String, Tensor)>,
}

/// Reads the case in `dir`.
pub fn read_case(dir: &Path) -> Result<Case> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .collect();
    entries.sort();
    let mut case = Case { inputs: vec![], outputs: vec![] };
    for path in entries {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if let Some(name) = stem.strip_prefix("input.") {
            case.inputs.push((name.to_owned(), npy::read_npy(&path)?));
        } else if let Some(name) = stem.strip_prefix("output.") {
            case.outputs.push((name.to_owned(), npy::read_npy(&path)?));
        }
    }
    if case.inputs.is_empty() {
        return Err(Error::file(dir, "no input.NAME.npy files in this case folder"));
    }
    Ok(case)
}

/// The case folder `name` under `model_dir/cases` (an error if missing), or without a name the
/// first one by name, if any.
pub fn case_dir(model_dir: &Path, name: Option<&str>) -> Result<Option<PathBuf>> {
    match name {
        Some(name) => {
            let dir = model_dir.join("cases").join(name);
            if !dir.is_dir() {
                return Err(Error::file(dir, "no such case folder"));
            }
            Ok(Some(dir))
        }
        None => Ok(first_case(model_dir)),
    }
}

/// The first case folder (by name) under `model_dir/cases`, if any.
fn first_case(model_dir: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(model_dir.join("cases"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

/// Random inputs for `signature` with a fixed seed: a dynamic leading dim becomes `batch` (1 when
/// `None`), other dynamic dims 1; floats lie in [-2, 2), integers in [0, 10), bools are random.
pub fn generate(signature: &Signature, seed: u64, batch: Option<usize>) -> Result<Vec<(String, Tensor)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    signature
        .inputs
        .iter()
        .map(|spec| {
            let dtype = spec.dtype.ok_or_else(|| {
                Error::invalid_input(
                    &spec.name,
                    "dtype unknown: give the input with --input or write a spec file",
                )
            })?;
            let shape: Vec<usize> = spec
                .shape
                .as_ref()
                .ok_or_else(|| {
                    Error::invalid_input(
                        &spec.name,
                        "shape unknown: give the input with --input or write a spec file",
                    )
                })?
                .iter()
                .enumerate()
                .map(|(i, d)| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Dynamic(_) if i == 0 => batch.unwrap_or(1),
                    Dim::Dynamic(_) => 1,
                })
                .collect();
            let n = rivet::element_count(&shape)?;
            let tensor = match dtype {
                DType::F32 => Tensor::from_slice(
                    &shape,
                    &(0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect::<Vec<_>>(),
                ),
                DType::F64 => Tensor::from_slice(
                    &shape,
                    &(0..n).map(|_| rng.random_range(-2.0f64..2.0)).collect::<Vec<_>>(),
                ),
                DType::F16 => Tensor::from_slice(
                    &shape,
                    &(0..n).map(|_| half::f16::from_f32(rng.random_range(-2.0f32..2.0))).collect::<Vec<_>>(),
                ),
                DType::BF16 => Tensor::from_slice(
                    &shape,
                    &(0..n).map(|_| half::bf16::from_f32(rng.random_range(-2.0f32..2.0))).collect::<Vec<_>>(),
                ),
                DType::Bool => {
                    Tensor::from_slice(&shape, &(0..n).map(|_| rng.random_bool(0.5)).collect::<Vec<_>>())
                }
                other => {
                    let bytes: Vec<u8> = (0..n)
                        .flat_map(|_| {
                            let v: i64 = rng.random_range(0..10);
                            v.to_le_bytes()[..other.size()].to_vec()
                        })
                        .collect();
                    Tensor::from_bytes(other, &shape, &bytes)
                }
            }?;
            Ok((spec.name.clone(), tensor))
        })
        .collect()
}

/// The elements of any tensor as f64, for comparisons.
pub fn as_f64(tensor: &Tensor) -> Vec<f64> {
    fn conv<T: rivet::Element>(t: &Tensor, f: impl Fn(T) -> f64) -> Vec<f64> {
        t.as_slice::<T>().map(|s| s.iter().map(|&v| f(v)).collect()).unwrap_or_default()
    }
    match tensor.dtype() {
        DType::F16 => conv(tensor, |v: half::f16| v.to_f64()),
        DType::BF16 => conv(tensor, |v: half::bf16| v.to_f64()),
        DType::F32 => conv(tensor, |v: f32| v as f64),
        DType::F64 => conv(tensor, |v: f64| v),
        DType::I8 => conv(tensor, |v: i8| v as f64),
        DType::I16 => conv(tensor, |v: i16| v as f64),
        DType::I32 => conv(tensor, |v: i32| v as f64),
        DType::I64 => conv(tensor, |v: i64| v as f64),
        DType::U8 => conv(tensor, |v: u8| v as f64),
        DType::Bool => conv(tensor, |v: bool| f64::from(u8::from(v))),
    }
}

/// Why outputs cannot be compared with their reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomparable {
    /// The shapes differ.
    Shape(Vec<usize>, Vec<usize>),
    /// No output has the reference's name.
    NoOutputNamed(String),
    /// There is no output at the reference's position.
    NoOutputAt(usize),
    /// An output's comparison failed.
    Output(String, Box<Incomparable>),
}

impl std::fmt::Display for Incomparable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomparable::Shape(a, e) => write!(f, "shape {a:?} differs from reference {e:?}"),
            Incomparable::NoOutputNamed(n) => write!(f, "no output named \"{n}\""),
            Incomparable::NoOutputAt(i) => write!(f, "no output {i}"),
            Incomparable::Output(name, why) => write!(f, "output {name}: {why}"),
        }
    }
}

/// Largest absolute and relative difference of `actual` from `expected`, or why they cannot be
/// compared. The relative difference skips elements whose reference is below 1e-6 in magnitude,
/// where it would only measure noise around zero.
pub fn max_diff(actual: &Tensor, expected: &Tensor) -> std::result::Result<(f64, f64), Incomparable> {
    if actual.shape() != expected.shape() {
        return Err(Incomparable::Shape(actual.shape().to_vec(), expected.shape().to_vec()));
    }
    let (a, e) = (as_f64(actual), as_f64(expected));
    Ok(a.iter().zip(&e).fold((0.0, 0.0), |(abs, rel), (x, y)| {
        let d = (x - y).abs();
        let r = if y.abs() > 1e-6 { d / y.abs() } else { 0.0 };
        (f64::max(abs, d), f64::max(rel, r))
    }))
}

/// `tensor` with `batch` rows along its leading dimension, taken from its rows in turn (the first
/// `batch` rows, or all rows repeated), for running a case at another batch size.
pub fn with_batch(tensor: &Tensor, batch: usize) -> Result<Tensor> {
    let Some(&rows) = tensor.shape().first() else {
        return Err(Error::InvalidTensor("a scalar has no batch dimension to resize".into()));
    };
    if rows == batch {
        return Ok(tensor.clone());
    }
    if rows == 0 {
        return Err(Error::InvalidTensor(format!("cannot make {batch} rows from a tensor with 0 rows")));
    }
    if batch < rows {
        // The first rows, sharing the tensor's memory.
        return tensor.slice_rows(0, batch);
    }
    // Whole copies of the tensor, then the first rows of one more: one concatenation.
    let tail = tensor.slice_rows(0, batch % rows)?;
    let mut parts = vec![tensor.view(); batch / rows];
    parts.push(tail.view());
    Tensor::concat(&parts)
}

/// Compares outputs with the reference by name (or position when the reference is unnamed).
/// Returns (max abs, max rel, all within |a - ref| <= atol + rtol * |ref|), or why they cannot
/// be compared.
pub fn diff(
    outputs: &[(String, Tensor)],
    reference: &[(Option<String>, Tensor)],
    atol: f64,
    rtol: f64,
) -> std::result::Result<(f64, f64, bool), Incomparable> {
    let (mut abs, mut rel, mut close) = (0f64, 0f64, true);
    for (i, (name, expected)) in reference.iter().enumerate() {
        let actual = match name {
            Some(n) => outputs
                .iter()
                .find(|(o, _)| o == n)
                .map(|(_, t)| t)
                .ok_or_else(|| Incomparable::NoOutputNamed(n.clone()))?,
            None => outputs.get(i).map(|(_, t)| t).ok_or(Incomparable::NoOutputAt(i))?,
        };
        let (a, r) = max_diff(actual, expected)
            .map_err(|e| Incomparable::Output(name.as_deref().unwrap_or("?").to_owned(), Box::new(e)))?;
        abs = abs.max(a);
        rel = rel.max(r);
        let (av, ev) = (as_f64(actual), as_f64(expected));
        close &= av.iter().zip(&ev).all(|(x, y)| (x - y).abs() <= atol + rtol * y.abs());
    }
    Ok((abs, rel, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_batch_takes_rows_in_turn() {
        let t = Tensor::from_slice(&[2, 3], &[1f32, 2., 3., 4., 5., 6.]).unwrap();
        let four = with_batch(&t, 4).unwrap();
        assert_eq!(four.shape(), &[4, 3]);
        assert_eq!(four.as_slice::<f32>().unwrap(), &[1., 2., 3., 4., 5., 6., 1., 2., 3., 4., 5., 6.]);
        let one = with_batch(&t, 1).unwrap();
        assert_eq!((one.shape(), one.as_slice::<f32>().unwrap()), (&[1usize, 3][..], &[1f32, 2., 3.][..]));
        let scalar = Tensor::from_slice(&[], &[1f32]).unwrap();
        assert!(with_batch(&scalar, 2).unwrap_err().to_string().contains("scalar"));
    }

    #[test]
    fn generated_inputs_take_the_batch_on_a_dynamic_leading_dim() {
        let sig: Signature = serde_json::from_str(
            r#"{"inputs": [{"name": "x", "dtype": "f32", "shape": ["batch", "seq", 4]}], "outputs": []}"#,
        )
        .unwrap();
        let a = generate(&sig, 7, Some(5)).unwrap();
        assert_eq!(a[0].1.shape(), &[5, 1, 4]);
        // Same seed, same values; another seed, other values.
        assert_eq!(a[0].1.as_bytes(), generate(&sig, 7, Some(5)).unwrap()[0].1.as_bytes());
        assert_ne!(a[0].1.as_bytes(), generate(&sig, 8, Some(5)).unwrap()[0].1.as_bytes());
        assert_eq!(generate(&sig, 7, None).unwrap()[0].1.shape(), &[1, 1, 4]);
    }
}
