//! The execution plan: an ONNX graph checked, typed, constant-folded and ordered once at load,
//! so that a run is a walk over a vector of steps reading and writing numbered slots.
//!
//! A graph is planned in passes (see [`passes`]): its initializers, inputs and the outer values
//! it reads get slots; a Relu that only reads a Gemm or a Conv is fused into it (a rewrite of
//! the node list); the nodes are ordered; each is looked up in the operator registry and built,
//! and a node whose inputs are all constant is evaluated once; the outputs are checked against
//! their declared types; each slot is freed after its last reader.

use std::fmt;

use candle_core::Tensor as CTensor;
use candle_onnx::onnx::{GraphProto, ModelProto};
use smallvec::SmallVec;

use crate::ops::sequence::{SeqKernel, Value};
use crate::ops::Kernel;
use crate::ty::Ty;

mod control;
mod passes;

/// Whether `RIVET_CANDLE_PROFILE` is set: each step's time is then printed to stderr. Never on
/// WebAssembly, which has neither the environment nor a clock.
fn profiling() -> bool {
    if cfg!(target_arch = "wasm32") {
        return false;
    }
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RIVET_CANDLE_PROFILE").is_some_and(|v| !v.is_empty()))
}

/// How a step computes: on tensors, or on sequences (the sequence operators).
enum Exec {
    Tensor(Kernel),
    Seq(SeqKernel),
}

/// One node, ready to run.
struct Step {
    /// `"op_type \"node name\""`, for errors.
    label: String,
    exec: Exec,
    inputs: Vec<Option<usize>>,
    /// Output slots, their element types and whether they are sequences (`None` for an output
    /// the graph does not use).
    outputs: Vec<Option<(usize, Ty, bool)>>,
    /// Slots no later step reads: freed once this step has run.
    free: Vec<usize>,
}

impl Step {
    /// Puts a kernel's results in their slots, checking each against the type planned for it.
    fn store(
        &self,
        out: impl ExactSizeIterator<Item = Value>,
        vals: &mut [Option<Value>],
    ) -> Result<(), RunError> {
        if out.len() < self.outputs.len() {
            return Err(RunError::Outputs { step: self.label.clone(), count: out.len() });
        }
        for (j, (o, v)) in self.outputs.iter().zip(out).enumerate() {
            let Some((s, ty, seq)) = *o else { continue };
            let ok = match &v {
                Value::Tensor(t) => !seq && t.dtype() == ty.candle(),
                Value::Seq(ts) => seq && ts.iter().all(|t| t.dtype() == ty.candle()),
            };
            if !ok {
                return Err(RunError::OutputType { step: self.label.clone(), output: j, planned: ty });
            }
            vals[s] = Some(v);
        }
        Ok(())
    }
}

/// A checked, ordered graph.
pub struct Plan {
    slots: usize,
    /// Per slot, its value where it is a constant (read in place by every run, never cloned
    /// into the run's slots: a clone is an atomic increment and decrement).
    constants: Vec<Option<Value>>,
    /// Slot and type of each graph input, in signature order.
    pub inputs: Vec<(String, usize, Ty)>,
    /// Slot and type of each graph output.
    pub outputs: Vec<(String, usize, Ty)>,
    steps: Vec<Step>,
}

/// Why a model cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Operators (or operator uses) the executor does not implement: one line per operator,
    /// naming its opset and a node that uses it.
    Operators(Vec<String>),
    /// A value of a type the executor cannot hold, or held where it cannot be (an initializer
    /// in an external file, a sequence as a graph output).
    Unsupported(String),
    /// The model is malformed.
    Invalid(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Operators(lines) => {
                write!(f, "the Candle executor does not implement {}", lines.join("; "))
            }
            PlanError::Unsupported(what) | PlanError::Invalid(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for PlanError {}

/// Why a run failed.
#[derive(Debug)]
pub enum RunError {
    /// A step's kernel failed.
    Kernel {
        /// The step: `op_type "node name"`.
        step: String,
        /// Candle's error, or the executor's own.
        source: candle_core::Error,
    },
    /// A step's kernel panicked (the panic was caught).
    Panicked {
        /// The step.
        step: String,
    },
    /// A step gave fewer outputs than the node has.
    Outputs {
        /// The step.
        step: String,
        /// How many it gave.
        count: usize,
    },
    /// A step's output is not of the type planned for it.
    OutputType {
        /// The step.
        step: String,
        /// Which output.
        output: usize,
        /// The type planned.
        planned: Ty,
    },
    /// A graph output was never computed.
    Missing(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Kernel { step, source } => write!(f, "{step}: {}", rivet_core::one_line(source)),
            RunError::Panicked { step } => write!(f, "{step} panicked"),
            RunError::Outputs { step, count } => write!(f, "{step} gave {count} outputs"),
            RunError::OutputType { step, output, planned } => {
                write!(f, "{step}: output {output} is not the {planned} value that was planned")
            }
            RunError::Missing(name) => write!(f, "output \"{name}\" was not computed"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Kernel { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The opset version of the default ONNX domain the model imports.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version)
}

impl Plan {
    /// Plans `model`'s graph.
    pub fn new(model: &ModelProto) -> Result<Plan, PlanError> {
        let graph: &GraphProto = model.graph.as_ref().ok_or_else(|| PlanError::Invalid("no graph".into()))?;
        let opset = default_opset(model)
            .ok_or_else(|| PlanError::Invalid("the model imports no default-domain opset".into()))?;
        Plan::typed_graph(graph, opset, &[], &[])
    }

    /// Plans `graph`; `outer` are values of enclosing graphs it reads (for the subgraphs of
    /// control flow), which become its trailing inputs; `formal[i]` is the type of the `i`-th
    /// graph input when the graph leaves it untyped (a Loop or Scan body, whose inputs take the
    /// node's types).
    fn typed_graph(
        graph: &GraphProto,
        opset: i64,
        outer: &[(String, Ty)],
        formal: &[Option<Ty>],
    ) -> Result<Plan, PlanError> {
        let mut slots = passes::import(graph, outer, formal)?;
        let nodes = passes::fuse(graph, opset);
        let order = passes::order(&nodes, &slots)?;
        let steps = passes::build(&nodes, &order, opset, &mut slots)?;
        let outputs = passes::outputs(graph, &slots)?;
        let steps = passes::free_after_last_use(steps, &outputs);
        Ok(Plan { slots: slots.len(), constants: slots.constants(), inputs: slots.inputs, outputs, steps })
    }

    /// Runs the plan on `feeds` (one per graph input, in order), returning the graph outputs.
    pub fn run(&self, feeds: Vec<CTensor>) -> Result<Vec<CTensor>, RunError> {
        let mut vals: Vec<Option<Value>> = vec![None; self.slots];
        // A slot's value: what the run put there (a feed overrides an initializer of the same
        // name), else its constant.
        fn value<'a>(
            vals: &'a [Option<Value>],
            constants: &'a [Option<Value>],
            s: usize,
        ) -> Option<&'a Value> {
            vals[s].as_ref().or(constants[s].as_ref())
        }
        for ((_, s, _), t) in self.inputs.iter().zip(feeds) {
            vals[*s] = Some(Value::Tensor(t));
        }
        let profile = profiling();
        for step in &self.steps {
            let started = profile.then(std::time::Instant::now);
            let panicked = |_| RunError::Panicked { step: step.label.clone() };
            let failed = |source| RunError::Kernel { step: step.label.clone(), source };
            // The arguments live on the stack, and each result goes straight to its slot.
            match &step.exec {
                Exec::Tensor(kernel) => {
                    let args: SmallVec<[Option<&CTensor>; 4]> = step
                        .inputs
                        .iter()
                        .map(|s| match s.and_then(|s| value(&vals, &self.constants, s)) {
                            Some(Value::Tensor(t)) => Some(t),
                            _ => None,
                        })
                        .collect();
                    let out = rivet_core::panics::catch_quietly(|| kernel(&args))
                        .map_err(panicked)?
                        .map_err(failed)?;
                    drop(args);
                    step.store(out.into_iter().map(Value::Tensor), &mut vals)?;
                }
                Exec::Seq(kernel) => {
                    let args: SmallVec<[Option<&Value>; 4]> = step
                        .inputs
                        .iter()
                        .map(|s| s.and_then(|s| value(&vals, &self.constants, s)))
                        .collect();
                    let out = rivet_core::panics::catch_quietly(|| kernel(&args))
                        .map_err(panicked)?
                        .map_err(failed)?;
                    drop(args);
                    step.store(out.into_iter(), &mut vals)?;
                }
            }
            for &s in &step.free {
                vals[s] = None;
            }
            if let Some(t) = started {
                eprintln!("rivet-candle: {:>10.1} µs  {}", t.elapsed().as_secs_f64() * 1e6, step.label);
            }
        }
        self.outputs
            .iter()
            .map(|(name, s, _)| match value(&vals, &self.constants, *s).cloned() {
                Some(Value::Tensor(t)) => Ok(t),
                _ => Err(RunError::Missing(name.clone())),
            })
            .collect()
    }

    /// Number of steps a run walks (after folding).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.steps.len()
    }
}
