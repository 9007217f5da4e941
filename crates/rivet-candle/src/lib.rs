//! Rivet's Candle backend: ONNX models evaluated by `candle-onnx`, in pure Rust.
//!
//! Concurrency: `candle_onnx::simple_eval` takes the model by shared reference, so any number
//! of threads may run one loaded model at once. Candle's CPU kernels size their thread pool
//! from `RAYON_NUM_THREADS`; the thread options of [`LoadOptions`] are refused with an error
//! rather than ignored.
//!
//! candle-onnx implements a subset of ONNX: [`SUPPORTED_OPS`]. A model using anything else is
//! refused at load time with an error naming the missing operators.

#![warn(missing_docs)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType as CDType, Device as CDevice, Tensor as CTensor};
use candle_onnx::onnx::{self, tensor_proto::DataType, tensor_shape_proto::dimension::Value as DimValue};
use rivet_core::format::{expect_cpu, expect_format};
use rivet_core::{
    one_line, Backend, DType, Dim, Error, InferenceBackend, LoadOptions, Model, ModelFormat, Result,
    Signature, Tensor, TensorSpec, TensorView,
};

const NAME: &str = "candle";

/// The ONNX operators candle-onnx 0.11 evaluates (the arms of its `simple_eval`).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Cos",
    "CumSum",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "Gelu",
    "Gemm",
    "Greater",
    "GreaterOrEqual",
    "HardSwish",
    "Identity",
    "If",
    "LSTM",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "OneHot",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "RNN",
    "Range",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "ScatterND",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// The Candle backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct CandleBackend;

impl CandleBackend {
    /// The backend.
    pub fn new() -> Self {
        CandleBackend
    }
}

/// The Rivet dtype of an ONNX element type, as candle-onnx accepts it for graph inputs.
fn onnx_dtype(elem_type: i32) -> Option<DType> {
    Some(match DataType::try_from(elem_type).ok()? {
        DataType::Float16 => DType::F16,
        DataType::Float => DType::F32,
        DataType::Double => DType::F64,
        DataType::Int64 => DType::I64,
        DataType::Uint8 => DType::U8,
        DataType::Bool => DType::Bool,
        _ => return None,
    })
}

fn onnx_type_name(elem_type: i32) -> String {
    DataType::try_from(elem_type).map_or_else(|_| format!("type {elem_type}"), |d| format!("{d:?}"))
}

fn spec_of(value: &onnx::ValueInfoProto, path: &Path, role: &str) -> Result<TensorSpec> {
    let name = value.name.clone();
    let Some(onnx::type_proto::Value::TensorType(tt)) = value.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(Error::unsupported(
            NAME,
            format!("{}: {role} \"{name}\" is not a tensor", path.display()),
        ));
    };
    let dtype = onnx_dtype(tt.elem_type).ok_or_else(|| {
        Error::unsupported(
            NAME,
            format!(
                "{}: {role} \"{name}\" has element type {}; candle-onnx handles f16, f32, f64, i64, u8 and bool",
                path.display(),
                onnx_type_name(tt.elem_type)
            ),
        )
    })?;
    let shape = tt.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(DimValue::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Dynamic(Some(p.clone())),
                _ => Dim::Dynamic(None),
            })
            .collect()
    });
    Ok(TensorSpec { name, dtype: Some(dtype), shape })
}

fn collect_ops(graph: &onnx::GraphProto, ops: &mut BTreeSet<String>) {
    for node in &graph.node {
        ops.insert(node.op_type.clone());
        for attr in &node.attribute {
            if let Some(g) = &attr.g {
                collect_ops(g, ops);
            }
        }
    }
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
        if options.intra_op_threads.is_some() || options.inter_op_threads.is_some() {
            return Err(Error::unsupported(
                NAME,
                "thread options: Candle sizes its pool from RAYON_NUM_THREADS; set that instead",
            ));
        }
        let model = candle_onnx::read_file(path).map_err(|e| Error::load(NAME, path, one_line(e)))?;
        Ok(Arc::new(CandleModel::from_proto(model, path)?))
    }
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

    /// Checks a parsed model (a graph, operators candle-onnx implements, tensor inputs and
    /// outputs of dtypes it handles) and reads its signature.
    fn from_proto(model: onnx::ModelProto, path: &Path) -> Result<CandleModel> {
        let graph =
            model.graph.as_ref().ok_or_else(|| Error::load(NAME, path, "not an ONNX model: no graph"))?;
        if graph.node.is_empty() && graph.output.is_empty() {
            return Err(Error::load(NAME, path, "not an ONNX model: empty graph"));
        }
        let mut ops = BTreeSet::new();
        collect_ops(graph, &mut ops);
        let missing: Vec<&str> =
            ops.iter().map(String::as_str).filter(|op| !SUPPORTED_OPS.contains(op)).collect();
        if !missing.is_empty() {
            return Err(Error::unsupported(
                NAME,
                format!(
                    "operator(s) {} used by {}: candle-onnx does not implement them",
                    missing.join(", "),
                    path.display()
                ),
            ));
        }
        let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .map(|i| spec_of(i, path, "input"))
            .collect::<Result<Vec<_>>>()?;
        let outputs = graph.output.iter().map(|o| spec_of(o, path, "output")).collect::<Result<Vec<_>>>()?;
        Ok(CandleModel { model, signature: Signature { inputs, outputs } })
    }
}

/// An ONNX model evaluated by candle-onnx.
pub struct CandleModel {
    model: onnx::ModelProto,
    signature: Signature,
}

impl CandleModel {
    /// The parsed ONNX model, for direct `candle_onnx::simple_eval` calls (benchmarks).
    pub fn proto(&self) -> &onnx::ModelProto {
        &self.model
    }
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
        DType::I8 => return Err(Error::unsupported(NAME, "dtype i8: Candle has no 8-bit signed integers")),
    };
    CTensor::from_raw_buffer(view.as_bytes(), dtype, view.shape(), &CDevice::Cpu)
        .map_err(|e| Error::backend(NAME, one_line(e)))
}

/// Copies a Candle tensor into a Rivet tensor of `want` (u8 → bool when the model says bool).
pub fn from_candle(tensor: &CTensor, want: Option<DType>) -> Result<Tensor> {
    let err = |e: candle_core::Error| Error::backend(NAME, one_line(e));
    let dtype = match tensor.dtype() {
        CDType::U8 if want == Some(DType::Bool) => DType::Bool,
        CDType::U8 => DType::U8,
        CDType::I16 => DType::I16,
        CDType::I32 => DType::I32,
        CDType::I64 => DType::I64,
        CDType::BF16 => DType::BF16,
        CDType::F16 => DType::F16,
        CDType::F32 => DType::F32,
        CDType::F64 => DType::F64,
        other => return Err(Error::unsupported(NAME, format!("output dtype {other:?}"))),
    };
    let flat = tensor.flatten_all().map_err(err)?;
    let shape = tensor.dims().to_vec();
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
        DType::I16 => copy!(i16),
        DType::I32 => copy!(i32),
        DType::I64 => copy!(i64),
        DType::BF16 => copy!(half::bf16),
        DType::F16 => copy!(half::f16),
        DType::F32 => copy!(f32),
        DType::F64 => copy!(f64),
        DType::I8 | DType::Bool => Err(Error::unsupported(NAME, format!("output dtype {dtype}"))),
    }
}

impl Model for CandleModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn backend(&self) -> Backend {
        Backend::CANDLE
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let mut feeds = HashMap::with_capacity(inputs.len());
        for (view, spec) in inputs.iter().zip(&self.signature.inputs) {
            feeds.insert(spec.name.clone(), to_candle(view)?);
        }
        let mut results = rivet_core::panics::catch_quietly(|| candle_onnx::simple_eval(&self.model, feeds))
            .map_err(|_| Error::backend(NAME, "candle-onnx panicked while evaluating the graph"))?
            .map_err(|e| Error::backend(NAME, one_line(e)))?;
        self.signature
            .outputs
            .iter()
            .map(|spec| {
                let value = results.remove(&spec.name).ok_or_else(|| {
                    Error::backend(NAME, format!("output \"{}\" missing from the run", spec.name))
                })?;
                from_candle(&value, spec.dtype)
            })
            .collect()
    }
}
