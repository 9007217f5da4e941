//! Rivet's Candle backend: ONNX models run by Rivet's own executor on `candle-core`, in pure
//! Rust (no libtorch, no ONNX Runtime).
//!
//! The model is planned once at load: every node's operator, attributes, input types
//! and opset are checked against what the executor implements, and anything else is refused
//! with an error naming each operator, its opset and a node that uses it; initializers become
//! Candle tensors once; nodes whose inputs are all constant are evaluated at load; the nodes are
//! ordered and each value gets a numbered slot that is freed after its last reader. A run is a
//! walk over that vector of steps, with no name lookups. A tensor whose size comes from values
//! is bounded by [`MAX_TENSOR_BYTES`]; a panic inside a kernel becomes an error naming the
//! node.
//!
//! Concurrency: a loaded model is immutable, so any number of threads may run it at once, with
//! no lock. Threads: a run stays on the calling thread; only matrix products and convolutions
//! of more than 2^21 multiply-adds, and a batch of at least as many images as threads, split
//! their work over `intra_op_threads` threads (one thread: no split), or without it over as
//! many as the global rayon pool has (sized by `RAYON_NUM_THREADS`, else the CPU count).
//! Outputs are the same bits at every thread count.
//! `inter_op_threads` must be 1 or unset: nodes run one after another.

#![warn(missing_docs)]

/// A [`Refusal`](ops::Refusal) with a formatted reason: `Err(refuse!("axis {a} is out of range"))`.
macro_rules! refuse {
    ($($reason:tt)*) => {
        $crate::ops::Refusal::from(format!($($reason)*))
    };
}

mod kernels;
mod ops;
mod plan;
mod proto;
mod ty;

pub use ops::MAX_TENSOR_BYTES;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType as CDType, Device as CDevice, Tensor as CTensor};
use candle_onnx::onnx::{self, tensor_shape_proto::dimension::Value as DimValue};
use rivet_core::format::{expect_cpu, expect_format};
use rivet_core::{
    one_line, Backend, DType, Dim, Error, InferenceBackend, LoadOptions, Model, ModelFormat, Result,
    Signature, Tensor, TensorSpec, TensorView,
};

use crate::plan::{Plan, PlanError};
use crate::ty::Ty;

const NAME: &str = "candle";

/// The Candle backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct CandleBackend;

impl CandleBackend {
    /// The backend.
    pub fn new() -> Self {
        CandleBackend
    }
}

fn spec_of(value: &onnx::ValueInfoProto, ty: Ty, path: &Path, role: &str) -> Result<TensorSpec> {
    let name = value.name.clone();
    let dtype = ty.rivet().ok_or_else(|| {
        Error::unsupported(
            NAME,
            format!("{}: {role} \"{name}\" is {ty}, which Rivet tensors do not carry", path.display()),
        )
    })?;
    let shape = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(onnx::type_proto::Value::TensorType(tt)) => tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimValue::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                    Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Dynamic(Some(p.clone())),
                    _ => Dim::Dynamic(None),
                })
                .collect()
        }),
        _ => None,
    };
    Ok(TensorSpec { name, dtype: Some(dtype), shape })
}

impl InferenceBackend for CandleBackend {
    fn name(&self) -> Backend {
        Backend::CANDLE
    }

    fn formats(&self) -> &[ModelFormat] {
        &[ModelFormat::Onnx]
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        options.options_for(NAME).check_known(&[])?;
        expect_format(path, NAME, ModelFormat::Onnx)?;
        expect_cpu(options.device, NAME, "Candle")?;
        if options.inter_op_threads.is_some_and(|n| n != 1) {
            return Err(Error::unsupported(
                NAME,
                "inter_op_threads other than 1: the Candle executor runs nodes one after another",
            ));
        }
        let budget = match options.intra_op_threads {
            Some(0) => return Err(Error::unsupported(NAME, "intra_op_threads=0: give at least 1")),
            Some(n) => Some(
                kernels::threads::Budget::new(n)
                    .map_err(|e| Error::backend(NAME, format!("cannot start {n} threads: {e}")))?,
            ),
            None => None,
        };
        let model = candle_onnx::read_file(path).map_err(|e| Error::load(NAME, path, one_line(e)))?;
        let mut model = CandleModel::from_proto(model, path)?;
        model.budget = budget;
        Ok(Arc::new(model))
    }
}

/// One operator the executor implements, at a range of opsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorInfo {
    /// Its domain: `ai.onnx` for ONNX's default one.
    pub domain: &'static str,
    /// Its name, as a node's `op_type` spells it.
    pub name: &'static str,
    /// The opsets of its domain it is implemented at: `"1+"`, `"7–12"`.
    pub opsets: String,
    /// The family it is listed under (`element-wise`, `network`, `sequence`...).
    pub family: &'static str,
}

/// Every operator the executor implements, from its operator registry, ordered by family (in
/// the order the Candle guide lists them) and then by name.
pub fn operators() -> Result<Vec<OperatorInfo>> {
    let registry = ops::registry::registry()
        .map_err(|e| Error::backend(NAME, format!("the operator registry is broken: {e}")))?;
    let mut list: Vec<OperatorInfo> = registry
        .iter()
        .map(|d| OperatorInfo {
            domain: if d.domain.is_empty() { "ai.onnx" } else { d.domain },
            name: d.name,
            opsets: d.opsets(),
            family: d.family,
        })
        .collect();
    let families = ops::family_order();
    list.sort_by_key(|o| (families.iter().position(|f| *f == o.family), o.domain, o.name));
    Ok(list)
}

impl CandleModel {
    /// Loads an ONNX model held in memory, with the same checks as a file load (the thread
    /// and device options of a file load do not apply: it runs on the CPU). `origin` names the
    /// model in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<CandleModel> {
        use prost::Message;
        let model = onnx::ModelProto::decode(bytes)
            .map_err(|e| Error::load(NAME, origin, format!("not an ONNX model: {e}")))?;
        CandleModel::from_proto(model, origin)
    }

    /// Plans a parsed model and reads its signature.
    fn from_proto(model: onnx::ModelProto, path: &Path) -> Result<CandleModel> {
        let graph =
            model.graph.as_ref().ok_or_else(|| Error::load(NAME, path, "not an ONNX model: no graph"))?;
        if graph.node.is_empty() && graph.output.is_empty() {
            return Err(Error::load(NAME, path, "not an ONNX model: empty graph"));
        }
        let plan = rivet_core::panics::catch_quietly(|| Plan::new(&model))
            .map_err(|_| Error::backend(NAME, format!("{}: planning the graph panicked", path.display())))?
            .map_err(|e| match e {
                PlanError::Operators(lines) => Error::unsupported(
                    NAME,
                    format!(
                        "{}: the Candle executor does not implement {}",
                        path.display(),
                        lines.join("; ")
                    ),
                ),
                PlanError::Unsupported(what) => {
                    Error::unsupported(NAME, format!("{}: {what}", path.display()))
                }
                PlanError::Invalid(why) => Error::load(NAME, path, why),
            })?;
        let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .zip(&plan.inputs)
            .map(|(i, (_, _, ty))| spec_of(i, *ty, path, "input"))
            .collect::<Result<Vec<_>>>()?;
        let outputs = graph
            .output
            .iter()
            .zip(&plan.outputs)
            .map(|(o, (_, _, ty))| spec_of(o, *ty, path, "output"))
            .collect::<Result<Vec<_>>>()?;
        let signature = Signature { inputs, outputs };
        let names = signature.output_names(signature.outputs.len()).into();
        Ok(CandleModel { plan, signature, names, budget: None })
    }

    /// Number of steps a run walks, after constant folding.
    pub fn steps(&self) -> usize {
        self.plan.len()
    }
}

/// An ONNX model planned for Rivet's Candle executor.
pub struct CandleModel {
    plan: Plan,
    signature: Signature,
    /// The output names, shared by every run's `Outputs`.
    names: Arc<[String]>,
    /// The intra-op thread count given at load, with its pool; `None` for the default.
    budget: Option<kernels::threads::Budget>,
}

/// Copies a Rivet view into a Candle CPU tensor (bool becomes u8, as candle-onnx expects).
pub fn to_candle(view: &TensorView<'_>) -> Result<CTensor> {
    let dtype = match view.dtype() {
        DType::F16 => CDType::F16,
        DType::BF16 => CDType::BF16,
        DType::F32 => CDType::F32,
        DType::F64 => CDType::F64,
        DType::I16 => CDType::I16,
        DType::I32 => CDType::I32,
        DType::I64 => CDType::I64,
        DType::U8 | DType::Bool => CDType::U8,
        DType::I8 => {
            // Candle has no 8-bit signed tensors: the executor holds int8 values as i16.
            let wide: Vec<i16> = view.as_bytes().iter().map(|&b| i16::from(b as i8)).collect();
            return CTensor::from_vec(wide, view.shape(), &CDevice::Cpu)
                .map_err(|e| Error::backend(NAME, one_line(e)));
        }
    };
    CTensor::from_raw_buffer(view.as_bytes(), dtype, view.shape(), &CDevice::Cpu)
        .map_err(|e| Error::backend(NAME, one_line(e)))
}

/// A Rivet tensor of `want` (u8 → bool when the model says bool) with a Candle tensor's values:
/// over the Candle tensor's own memory, without a copy, when the tensor is all of its storage
/// (the usual result of a run), else a copy. Candle never changes a storage in place once made,
/// and the executor does not either, so the memory stays as it is while the Rivet tensor holds it.
pub fn from_candle(tensor: &CTensor, want: Option<DType>) -> Result<Tensor> {
    let err = |e: candle_core::Error| Error::backend(NAME, one_line(e));
    let dtype = match tensor.dtype() {
        CDType::U8 if want == Some(DType::Bool) => DType::Bool,
        CDType::U8 => DType::U8,
        CDType::I16 if want == Some(DType::I8) => DType::I8,
        CDType::I16 => DType::I16,
        CDType::I32 => DType::I32,
        CDType::I64 => DType::I64,
        CDType::BF16 => DType::BF16,
        CDType::F16 => DType::F16,
        CDType::F32 => DType::F32,
        CDType::F64 => DType::F64,
        other => return Err(Error::unsupported(NAME, format!("output dtype {other:?}"))),
    };
    if !matches!(dtype, DType::Bool | DType::I8) {
        let (storage, layout) = tensor.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets())
        {
            macro_rules! take {
                ($t:ty) => {{
                    let all = cpu.as_slice::<$t>().map_err(err)?;
                    let data = &all[start..end];
                    if data.len() == all.len() {
                        let (ptr, len) = (data.as_ptr().cast::<u8>(), std::mem::size_of_val(data));
                        // SAFETY: `data` is the storage's buffer, which the clone of `tensor`
                        // keeps alive and which nothing changes (see above); it is plain CPU
                        // memory readable from any thread.
                        unsafe { Tensor::from_handed_over(dtype, tensor.dims(), ptr, len, tensor.clone()) }
                    } else {
                        // A part of a larger storage is copied, so as not to keep all of it.
                        Tensor::from_slice(tensor.dims(), data)
                    }
                }};
            }
            return match dtype {
                DType::U8 => take!(u8),
                DType::I16 => take!(i16),
                DType::I32 => take!(i32),
                DType::I64 => take!(i64),
                DType::BF16 => take!(half::bf16),
                DType::F16 => take!(half::f16),
                DType::F32 => take!(f32),
                _ => take!(f64),
            };
        }
    }
    let shape = tensor.dims().to_vec();
    let flat = tensor.flatten_all().map_err(err)?;
    if dtype == DType::Bool {
        let bytes = flat.to_vec1::<u8>().map_err(err)?;
        let bools: Vec<u8> = bytes.iter().map(|&b| u8::from(b != 0)).collect();
        return Tensor::from_bytes(DType::Bool, &shape, &bools);
    }
    macro_rules! copy {
        ($t:ty) => {{
            let values = flat.to_vec1::<$t>().map_err(err)?;
            Tensor::from_slice(&shape, &values)
        }};
    }
    match dtype {
        DType::U8 => copy!(u8),
        DType::I8 => {
            let wide = flat.to_vec1::<i16>().map_err(err)?;
            let narrow = wide
                .iter()
                .map(|&v| i8::try_from(v).map_err(|_| Error::backend(NAME, format!("int8 output holds {v}"))))
                .collect::<Result<Vec<i8>>>()?;
            Tensor::from_slice(&shape, &narrow)
        }
        DType::I16 => copy!(i16),
        DType::I32 => copy!(i32),
        DType::I64 => copy!(i64),
        DType::BF16 => copy!(half::bf16),
        DType::F16 => copy!(half::f16),
        DType::F32 => copy!(f32),
        DType::F64 => copy!(f64),
        DType::Bool => Err(Error::unsupported(NAME, format!("output dtype {dtype}"))),
    }
}

impl Model for CandleModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn backend(&self) -> Backend {
        Backend::CANDLE
    }

    fn output_names(&self, count: usize) -> Arc<[String]> {
        if count == self.names.len() {
            Arc::clone(&self.names)
        } else {
            self.signature.output_names(count).into()
        }
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let feeds = inputs.iter().map(to_candle).collect::<Result<Vec<_>>>()?;
        let run = || self.plan.run(feeds).map_err(|e| Error::backend(NAME, &e).with_source(e));
        // The run stays on the calling thread; only products large enough to gain go to the
        // pool (kernels::threads).
        let results = kernels::threads::with_budget(self.budget.as_ref(), run)?;
        self.signature
            .outputs
            .iter()
            .zip(&results)
            .map(|(spec, value)| from_candle(value, spec.dtype))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_result_is_handed_over_and_a_part_is_copied() {
        let whole =
            CTensor::from_vec((0..12).map(|i| i as f32 * 0.5).collect::<Vec<_>>(), (3, 4), &CDevice::Cpu)
                .unwrap();
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let out = from_candle(&whole, None).unwrap();
        assert_eq!((out.dtype(), out.shape()), (DType::F32, &[3, 4][..]));
        assert_eq!(out.as_slice::<f32>().unwrap(), &values[..]);
        let storage_ptr = {
            let (storage, _) = whole.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else { unreachable!("a CPU tensor") };
            cpu.as_slice::<f32>().unwrap().as_ptr()
        };
        assert_eq!(out.as_slice::<f32>().unwrap().as_ptr(), storage_ptr, "no copy of a whole storage");
        // The Rivet tensor keeps the memory: dropping Candle's tensor changes nothing.
        drop(whole);
        assert_eq!(out.as_slice::<f32>().unwrap(), &values[..]);

        // Rows 1..3 of a [3, 4] tensor: contiguous but a part of its storage, so copied.
        let base = CTensor::from_vec(values.clone(), (3, 4), &CDevice::Cpu).unwrap();
        let part = base.narrow(0, 1, 2).unwrap();
        let out = from_candle(&part, None).unwrap();
        assert_eq!(out.shape(), &[2, 4]);
        assert_eq!(out.as_slice::<f32>().unwrap(), &values[4..]);
        // A transposed view is not contiguous: copied in row-major order.
        let t = from_candle(&base.t().unwrap(), None).unwrap();
        assert_eq!(t.shape(), &[4, 3]);
        assert_eq!(t.as_slice::<f32>().unwrap()[..4], [0.0, 2.0, 4.0, 0.5]);
        // u8 comes back as bool where the model says bool.
        let flags = CTensor::from_vec(vec![1u8, 0, 1], 3, &CDevice::Cpu).unwrap();
        let b = from_candle(&flags, Some(DType::Bool)).unwrap();
        assert_eq!(b.as_slice::<bool>().unwrap(), &[true, false, true]);
    }
}
