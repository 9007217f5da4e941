//! The execution plan: an ONNX graph checked, typed, constant-folded and ordered once at load,
//! so that a run is a walk over a vector of steps reading and writing numbered slots.

use std::collections::{BTreeMap, HashMap};

use candle_core::Tensor as CTensor;
use candle_onnx::onnx::{GraphProto, ModelProto};
use smallvec::SmallVec;

use crate::ops::sequence::{self, SeqKernel, Value};
use crate::ops::{self, Kernel, NodeCtx};
use crate::proto::tensor_from_proto;
use crate::ty::Ty;

/// Whether `RIVET_CANDLE_PROFILE` is set: each step's time is then printed to stderr.
fn profiling() -> bool {
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
    ) -> Result<(), String> {
        if out.len() < self.outputs.len() {
            return Err(format!("{} gave {} outputs", self.label, out.len()));
        }
        for (j, (o, v)) in self.outputs.iter().zip(out).enumerate() {
            let Some((s, ty, seq)) = *o else { continue };
            let ok = match &v {
                Value::Tensor(t) => !seq && t.dtype() == ty.candle(),
                Value::Seq(ts) => seq && ts.iter().all(|t| t.dtype() == ty.candle()),
            };
            if !ok {
                return Err(format!("{}: output {j} is not the {ty} value that was planned", self.label));
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
pub enum PlanError {
    /// Operators (or operator uses) the executor does not implement: one line per operator.
    Operators(Vec<String>),
    /// A value of a type the executor cannot hold.
    Unsupported(String),
    /// The model is malformed.
    Invalid(String),
}

fn value_ty(v: &candle_onnx::onnx::ValueInfoProto) -> Result<Ty, String> {
    use candle_onnx::onnx::type_proto::Value;
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::TensorType(tt)) => Ty::from_onnx(tt.elem_type).ok_or_else(|| {
            format!(
                "\"{}\" has element type {}, which Candle cannot hold",
                v.name,
                Ty::onnx_name(tt.elem_type)
            )
        }),
        Some(_) => {
            Err(format!("\"{}\" is not a tensor (sequences, maps and optionals are not supported)", v.name))
        }
        None => Err(format!("\"{}\" has no type", v.name)),
    }
}

/// Every name `graph`'s nodes (and their subgraphs) read that nothing inside defines.
fn free_names(graph: &GraphProto, out: &mut Vec<String>) {
    let mut defined: std::collections::HashSet<&str> = std::collections::HashSet::new();
    defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    defined.extend(graph.input.iter().map(|i| i.name.as_str()));
    for node in &graph.node {
        for i in &node.input {
            if !i.is_empty() && !defined.contains(i.as_str()) && !out.contains(i) {
                out.push(i.clone());
            }
        }
        for a in &node.attribute {
            if let Some(g) = &a.g {
                let mut inner = Vec::new();
                free_names(g, &mut inner);
                for n in inner {
                    if !defined.contains(n.as_str()) && !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
        }
        defined.extend(node.output.iter().map(String::as_str));
    }
    for o in &graph.output {
        if !defined.contains(o.name.as_str()) && !out.contains(&o.name) {
            out.push(o.name.clone());
        }
    }
}

/// The outer values (name and type) that `graphs` read, in a fixed order.
fn outer_used(graphs: &[&GraphProto], outer: &[(String, Ty)]) -> Result<Vec<(String, Ty)>, String> {
    let mut free = Vec::new();
    for g in graphs {
        free_names(g, &mut free);
    }
    let mut used = Vec::new();
    for n in &free {
        match outer.iter().find(|(o, _)| o == n) {
            Some(v) => used.push(v.clone()),
            None => return Err(format!("a subgraph reads \"{n}\", which nothing produces")),
        }
    }
    Ok(used)
}

/// Plans subgraph `g`, which takes `used` outer values after its own inputs; `formal` types
/// its inputs where it leaves them untyped.
fn plan_sub(
    g: &GraphProto,
    opset: i64,
    used: &[(String, Ty)],
    formal: &[Option<Ty>],
    what: &str,
) -> Result<Plan, String> {
    Plan::typed_graph(g, opset, used, formal).map_err(|e| match e {
        PlanError::Operators(lines) => format!("{what} uses {}", lines.join("; ")),
        PlanError::Unsupported(w) | PlanError::Invalid(w) => format!("{what}: {w}"),
    })
}

/// The graph attribute `name` of `node`.
fn graph_attr<'a>(node: &'a candle_onnx::onnx::NodeProto, name: &str) -> Result<&'a GraphProto, String> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.g.as_ref())
        .ok_or(format!("{name} is missing"))
}

/// What planning a control-flow node gives: its kernel, its output types and the outer names
/// to pass after its own inputs.
type Control = (Kernel, Vec<Ty>, Vec<String>);

/// Plans an `If` node: both branches, reading the outer values they use.
fn plan_if(
    node: &candle_onnx::onnx::NodeProto,
    opset: i64,
    outer: &[(String, Ty)],
) -> Result<Control, String> {
    for a in &node.attribute {
        if a.name != "then_branch" && a.name != "else_branch" {
            return Err(format!("attribute \"{}\" is not supported", a.name));
        }
    }
    let (then_g, else_g) = (graph_attr(node, "then_branch")?, graph_attr(node, "else_branch")?);
    let used = outer_used(&[then_g, else_g], outer)?;
    let (then_p, else_p) =
        (plan_sub(then_g, opset, &used, &[], "a branch")?, plan_sub(else_g, opset, &used, &[], "a branch")?);
    let then_t: Vec<Ty> = then_p.outputs.iter().map(|o| o.2).collect();
    let else_t: Vec<Ty> = else_p.outputs.iter().map(|o| o.2).collect();
    if then_t != else_t {
        return Err("the branches' outputs differ in number or type".into());
    }
    if node.output.len() != then_t.len() {
        return Err(format!("{} outputs for branches giving {}", node.output.len(), then_t.len()));
    }
    let kernel: Kernel = Box::new(move |x| {
        let cond = ops::req(x, 0)?;
        if cond.elem_count() != 1 {
            candle_core::bail!("the condition must hold one value, got {:?}", cond.dims());
        }
        let take = ops::ints(cond)?[0] != 0;
        let p = if take { &then_p } else { &else_p };
        p.run(given(&x[1..])?).map_err(candle_core::Error::Msg)
    });
    Ok((kernel, then_t, used.into_iter().map(|u| u.0).collect()))
}

/// Every value of `x` (all given), cloned (Candle tensors share their storage).
fn given(x: &[Option<&CTensor>]) -> candle_core::Result<Vec<CTensor>> {
    x.iter()
        .map(|t| t.cloned().ok_or_else(|| candle_core::Error::Msg("an input is missing".into())))
        .collect()
}

/// Stacks one scan output's per-iteration values along `axis` (`None`: no iteration ran).
fn stack(parts: &[CTensor], axis: usize, what: &str) -> candle_core::Result<CTensor> {
    if parts.is_empty() {
        candle_core::bail!("{what} ran no iteration, so its scan outputs have no shape");
    }
    if axis > parts[0].rank() {
        candle_core::bail!("scan output axis {axis} is out of range for rank {}", parts[0].rank());
    }
    CTensor::stack(parts, axis)
}

/// Plans a `Loop` node: its body, reading the outer values it uses.
fn plan_loop(
    node: &candle_onnx::onnx::NodeProto,
    opset: i64,
    outer: &[(String, Ty)],
    in_tys: &[Option<Ty>],
) -> Result<Control, String> {
    for a in &node.attribute {
        if a.name != "body" {
            return Err(format!("attribute \"{}\" is not supported", a.name));
        }
    }
    let body_g = graph_attr(node, "body")?;
    let used = outer_used(&[body_g], outer)?;
    let mut formal = vec![Some(Ty::I64), Some(Ty::Bool)];
    formal.extend(in_tys.iter().skip(2).copied());
    let body = plan_sub(body_g, opset, &used, &formal, "the body")?;
    if node.input.len() < 2 {
        return Err("Loop takes M and cond (either may be empty) before its loop-carried values".into());
    }
    let carried = node.input.len() - 2;
    let formal = body.inputs.len() - used.len();
    if formal != 2 + carried || body.outputs.len() < 1 + carried {
        return Err(format!(
            "the body takes {formal} inputs and gives {} outputs for {carried} loop-carried values",
            body.outputs.len()
        ));
    }
    if in_tys.first().copied().flatten().is_some_and(|t| t != Ty::I64) {
        return Err("the trip count M must be int64".into());
    }
    if in_tys.get(1).copied().flatten().is_some_and(|t| t != Ty::Bool) {
        return Err("the condition must be bool".into());
    }
    if body.inputs[0].2 != Ty::I64 || body.inputs[1].2 != Ty::Bool || body.outputs[0].2 != Ty::Bool {
        return Err("the body's iteration number must be int64 and its conditions bool".into());
    }
    for j in 0..carried {
        let want = in_tys.get(2 + j).copied().flatten().ok_or("a loop-carried value is missing")?;
        if body.inputs[2 + j].2 != want || body.outputs[1 + j].2 != want {
            return Err(format!("loop-carried value {j} is {want} but the body takes or gives another type"));
        }
    }
    let out_tys: Vec<Ty> = body.outputs[1..].iter().map(|o| o.2).collect();
    if node.output.len() > out_tys.len() {
        return Err(format!("{} outputs for a body giving {}", node.output.len(), out_tys.len()));
    }
    let scans = out_tys.len() - carried;
    let kernel: Kernel = Box::new(move |x| {
        let max = match x.first().copied().flatten() {
            Some(m) if m.elem_count() == 1 => Some(ops::ints(m)?[0]),
            Some(m) => candle_core::bail!("M must hold one value, got {:?}", m.dims()),
            None => None,
        };
        let mut keep_going = match x.get(1).copied().flatten() {
            Some(c) if c.elem_count() == 1 => ops::ints(c)?[0] != 0,
            Some(c) => candle_core::bail!("the condition must hold one value, got {:?}", c.dims()),
            None => true,
        };
        let mut state = given(&x[2..2 + carried])?;
        let outer_vals = given(&x[2 + carried..])?;
        let mut per_iter: Vec<Vec<CTensor>> = vec![Vec::new(); scans];
        let mut i: i64 = 0;
        while keep_going && max.is_none_or(|m| i < m) {
            let mut feeds = Vec::with_capacity(2 + carried + outer_vals.len());
            feeds.push(CTensor::new(i, &candle_core::Device::Cpu)?);
            feeds.push(CTensor::new(1u8, &candle_core::Device::Cpu)?);
            feeds.append(&mut state);
            feeds.extend(outer_vals.iter().cloned());
            let mut outs = body.run(feeds).map_err(candle_core::Error::Msg)?.into_iter();
            let cond =
                outs.next().ok_or_else(|| candle_core::Error::Msg("the body gave no condition".into()))?;
            if cond.elem_count() != 1 {
                candle_core::bail!("the body's condition must hold one value, got {:?}", cond.dims());
            }
            keep_going = ops::ints(&cond)?[0] != 0;
            state = outs.by_ref().take(carried).collect();
            for (k, v) in outs.enumerate() {
                ops::check_size(&[v.elem_count(), per_iter[k].len() + 1], v.dtype().size_in_bytes())?;
                per_iter[k].push(v);
            }
            i += 1;
        }
        let mut result = state;
        for parts in &per_iter {
            result.push(stack(parts, 0, "the Loop")?);
        }
        Ok(result)
    });
    Ok((kernel, out_tys, used.into_iter().map(|u| u.0).collect()))
}

/// Plans a `Scan` node (opset 9 and later): its body, reading the outer values it uses.
fn plan_scan(
    node: &candle_onnx::onnx::NodeProto,
    opset: i64,
    outer: &[(String, Ty)],
    in_tys: &[Option<Ty>],
) -> Result<Control, String> {
    if opset < 9 {
        return Err("Scan before opset 9 (with a batch axis) is not supported".into());
    }
    let known = [
        "body",
        "num_scan_inputs",
        "scan_input_axes",
        "scan_input_directions",
        "scan_output_axes",
        "scan_output_directions",
    ];
    let mut ints = std::collections::HashMap::new();
    let mut m = None;
    for a in &node.attribute {
        if !known.contains(&a.name.as_str()) {
            return Err(format!("attribute \"{}\" is not supported", a.name));
        }
        match a.name.as_str() {
            "num_scan_inputs" => m = Some(a.i),
            "body" => {}
            other => {
                ints.insert(other.to_string(), a.ints.clone());
            }
        }
    }
    let m = usize::try_from(m.ok_or("num_scan_inputs is required")?)
        .map_err(|_| "num_scan_inputs is negative")?;
    if m == 0 || m > node.input.len() {
        return Err(format!("num_scan_inputs {m} for {} inputs", node.input.len()));
    }
    let n = node.input.len() - m;
    let body_g = graph_attr(node, "body")?;
    let used = outer_used(&[body_g], outer)?;
    // A scan input's slice has the input's type.
    let body = plan_sub(body_g, opset, &used, in_tys, "the body")?;
    let formal = body.inputs.len() - used.len();
    if formal != n + m || body.outputs.len() < n {
        return Err(format!(
            "the body takes {formal} inputs and gives {} outputs for {n} states and {m} scan inputs",
            body.outputs.len()
        ));
    }
    for j in 0..n + m {
        let want = in_tys.get(j).copied().flatten().ok_or("an input is missing")?;
        if body.inputs[j].2 != want || (j < n && body.outputs[j].2 != want) {
            return Err(format!("input {j} is {want} but the body takes or gives another type"));
        }
    }
    let k = body.outputs.len() - n;
    let list = |name: &str, len: usize| -> Result<Vec<i64>, String> {
        let v = ints.get(name).cloned().unwrap_or_else(|| vec![0; len]);
        if v.len() != len {
            return Err(format!("{name} has {} entries for {len} values", v.len()));
        }
        Ok(v)
    };
    let (in_axes, in_dirs) = (list("scan_input_axes", m)?, list("scan_input_directions", m)?);
    let (out_axes, out_dirs) = (list("scan_output_axes", k)?, list("scan_output_directions", k)?);
    if in_dirs.iter().chain(&out_dirs).any(|&d| d != 0 && d != 1) {
        return Err("scan directions must be 0 or 1".into());
    }
    let out_tys: Vec<Ty> = body.outputs.iter().map(|o| o.2).collect();
    if node.output.len() > out_tys.len() {
        return Err(format!("{} outputs for a body giving {}", node.output.len(), out_tys.len()));
    }
    let kernel: Kernel = Box::new(move |x| {
        let mut state = given(&x[..n])?;
        let scanned = given(&x[n..n + m])?;
        let outer_vals = given(&x[n + m..])?;
        let mut axes = Vec::with_capacity(m);
        let mut len = None;
        for (t, &a) in scanned.iter().zip(&in_axes) {
            let r = t.rank() as i64;
            let a = if a < 0 { a + r } else { a };
            if a < 0 || a >= r {
                candle_core::bail!("scan input axis {a} is out of range for shape {:?}", t.dims());
            }
            let l = t.dims()[a as usize];
            if len.is_some_and(|v| v != l) {
                candle_core::bail!("scan inputs disagree in length: {l} and {}", len.unwrap_or(0));
            }
            len = Some(l);
            axes.push(a as usize);
        }
        let len = len.unwrap_or(0);
        let mut per_iter: Vec<Vec<CTensor>> = vec![Vec::new(); k];
        for t in 0..len {
            let mut feeds = Vec::with_capacity(n + m + outer_vals.len());
            feeds.append(&mut state);
            for ((s, &a), &d) in scanned.iter().zip(&axes).zip(&in_dirs) {
                let at = if d == 1 { len - 1 - t } else { t };
                feeds.push(s.narrow(a, at, 1)?.squeeze(a)?);
            }
            feeds.extend(outer_vals.iter().cloned());
            let mut outs = body.run(feeds).map_err(candle_core::Error::Msg)?.into_iter();
            state = outs.by_ref().take(n).collect();
            for (j, v) in outs.enumerate() {
                per_iter[j].push(v);
            }
        }
        let mut result = state;
        for (j, mut parts) in per_iter.into_iter().enumerate() {
            if out_dirs[j] == 1 {
                parts.reverse();
            }
            let rank = parts.first().map_or(0, |p| p.rank()) as i64 + 1;
            let a = if out_axes[j] < 0 { out_axes[j] + rank } else { out_axes[j] };
            if a < 0 {
                candle_core::bail!("scan output axis {} is out of range", out_axes[j]);
            }
            result.push(stack(&parts, a as usize, "the Scan")?);
        }
        Ok(result)
    });
    Ok((kernel, out_tys, used.into_iter().map(|u| u.0).collect()))
}

/// Relu nodes that the Gemm or Conv feeding them applies itself: producer node index → Relu
/// node index, where the Relu is the only reader of the producer's output (no other node, no
/// subgraph, not a graph output) and has exactly one input and one output.
fn relu_fusions(graph: &GraphProto) -> HashMap<usize, usize> {
    let default = |n: &candle_onnx::onnx::NodeProto| n.domain.is_empty() || n.domain == "ai.onnx";
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), i);
        }
    }
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for node in &graph.node {
        for i in node.input.iter().filter(|i| !i.is_empty()) {
            *readers.entry(i.as_str()).or_default() += 1;
        }
        for a in &node.attribute {
            if let Some(g) = &a.g {
                let mut inner = Vec::new();
                free_names(g, &mut inner);
                for n in inner {
                    let name = producer
                        .get(n.as_str())
                        .and_then(|&p| graph.node[p].output.iter().find(|o| **o == n));
                    if let Some(name) = name {
                        *readers.entry(name.as_str()).or_default() += 1;
                    }
                }
            }
        }
    }
    for o in &graph.output {
        *readers.entry(o.name.as_str()).or_default() += 1;
    }
    let mut fusions = HashMap::new();
    for (j, node) in graph.node.iter().enumerate() {
        if node.op_type != "Relu" || !default(node) || node.input.len() != 1 || node.output.len() != 1 {
            continue;
        }
        let x = node.input[0].as_str();
        let Some(&p) = producer.get(x) else { continue };
        let prod = &graph.node[p];
        let fusable = matches!(prod.op_type.as_str(), "Gemm" | "Conv")
            && default(prod)
            && prod.output.len() == 1
            && readers.get(x) == Some(&1);
        if fusable {
            fusions.insert(p, j);
        }
    }
    fusions
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
        Plan::graph(graph, opset, &[])
    }

    /// Plans `graph`; `outer` are values of enclosing graphs it reads (for `If` branches),
    /// which become its trailing inputs.
    fn graph(graph: &GraphProto, opset: i64, outer: &[(String, Ty)]) -> Result<Plan, PlanError> {
        Plan::typed_graph(graph, opset, outer, &[])
    }

    /// [`Plan::graph`], where `formal[i]` is the type of the `i`-th graph input when the graph
    /// leaves it untyped (a Loop or Scan body, whose inputs take the node's types).
    fn typed_graph(
        graph: &GraphProto,
        opset: i64,
        outer: &[(String, Ty)],
        formal: &[Option<Ty>],
    ) -> Result<Plan, PlanError> {
        let invalid = PlanError::Invalid;
        let mut slot_of: HashMap<&str, usize> = HashMap::new();
        let mut tys: Vec<Option<Ty>> = Vec::new();
        // Whether each slot holds a sequence (of tensors of its type) rather than a tensor.
        let mut is_seq: Vec<bool> = Vec::new();
        let mut consts: Vec<Option<CTensor>> = Vec::new();
        fn push(
            tys: &mut Vec<Option<Ty>>,
            consts: &mut Vec<Option<CTensor>>,
            ty: Ty,
            c: Option<CTensor>,
        ) -> usize {
            tys.push(Some(ty));
            consts.push(c);
            tys.len() - 1
        }
        let mut unsupported: BTreeMap<String, String> = BTreeMap::new();

        for init in &graph.initializer {
            let (t, ty) = tensor_from_proto(init).map_err(|e| {
                if e.contains("Candle cannot hold") || e.contains("external") {
                    PlanError::Unsupported(format!("initializer {e}"))
                } else {
                    invalid(e)
                }
            })?;
            let s = push(&mut tys, &mut consts, ty, Some(t));
            is_seq.push(false);
            slot_of.insert(init.name.as_str(), s);
        }
        let mut inputs = Vec::new();
        for (i, input) in graph.input.iter().enumerate() {
            if slot_of.contains_key(input.name.as_str()) {
                continue;
            }
            let ty = match formal.get(i).copied().flatten() {
                Some(t) if input.r#type.is_none() => t,
                _ => value_ty(input).map_err(|e| PlanError::Unsupported(format!("input {e}")))?,
            };
            let s = push(&mut tys, &mut consts, ty, None);
            is_seq.push(false);
            slot_of.insert(input.name.as_str(), s);
            inputs.push((input.name.clone(), s, ty));
        }
        for (name, ty) in outer {
            if slot_of.contains_key(name.as_str()) {
                continue;
            }
            let s = push(&mut tys, &mut consts, *ty, None);
            is_seq.push(false);
            slot_of.insert(name.as_str(), s);
            inputs.push((name.clone(), s, *ty));
        }

        let fusions = relu_fusions(graph);
        let fused_relus: std::collections::HashSet<usize> = fusions.values().copied().collect();

        // Topological order (ONNX requires it already; a graph that is not is ordered here).
        let mut pending: Vec<usize> = (0..graph.node.len()).collect();
        let mut steps = Vec::new();
        let mut defined: std::collections::HashSet<String> = slot_of.keys().map(|k| k.to_string()).collect();
        let mut refused: std::collections::HashSet<String> = std::collections::HashSet::new();
        while !pending.is_empty() {
            let mut progressed = false;
            let mut rest = Vec::new();
            for &i in &pending {
                let node = &graph.node[i];
                let ready =
                    node.input.iter().all(|n| n.is_empty() || defined.contains(n) || refused.contains(n));
                if !ready {
                    rest.push(i);
                    continue;
                }
                progressed = true;
                if fused_relus.contains(&i) && !node.input.iter().any(|n| refused.contains(n)) {
                    // Its producer applied it: its output is the producer's.
                    let s = slot_of[node.input[0].as_str()];
                    slot_of.insert(node.output[0].as_str(), s);
                    defined.insert(node.output[0].clone());
                    continue;
                }
                let label = format!("{} \"{}\"", node.op_type, node.name);
                let depends_on_refused = node.input.iter().any(|n| refused.contains(n));
                let domain_ok = node.domain.is_empty() || node.domain == "ai.onnx";
                // An If reads, besides its condition, every outer value its branches use.
                let mut extra: Vec<String> = Vec::new();
                let control = matches!(node.op_type.as_str(), "If" | "Loop" | "Scan");
                let outcome = if domain_ok && !depends_on_refused && control {
                    let outer_tys: Vec<(String, Ty)> = slot_of
                        .iter()
                        .filter(|(_, &s)| !is_seq[s])
                        .filter_map(|(n, &s)| tys[s].map(|t| (n.to_string(), t)))
                        .collect();
                    let in_tys: Vec<Option<Ty>> = node
                        .input
                        .iter()
                        .map(|n| {
                            if n.is_empty() || is_seq[slot_of[n.as_str()]] {
                                None
                            } else {
                                tys[slot_of[n.as_str()]]
                            }
                        })
                        .collect();
                    let planned = match node.op_type.as_str() {
                        "If" => plan_if(node, opset, &outer_tys),
                        "Loop" => plan_loop(node, opset, &outer_tys, &in_tys),
                        _ => plan_scan(node, opset, &outer_tys, &in_tys),
                    };
                    planned.map(|(k, t, free)| {
                        extra = free;
                        let ctx = NodeCtx { node, opset, tys: vec![], consts: vec![], fuse_relu: false };
                        (Exec::Tensor(k), t.into_iter().map(|t| (t, false)).collect::<Vec<_>>(), ctx)
                    })
                } else if !domain_ok {
                    Err(format!("domain \"{}\" is not supported", node.domain))
                } else if depends_on_refused {
                    Err(String::new())
                } else if sequence::is_sequence_op(&node.op_type) {
                    let kinds: Vec<Option<(Ty, bool)>> = node
                        .input
                        .iter()
                        .map(|n| {
                            if n.is_empty() {
                                None
                            } else {
                                let s = slot_of[n.as_str()];
                                tys[s].map(|t| (t, is_seq[s]))
                            }
                        })
                        .collect();
                    sequence::build(node, opset, &kinds).map(|(k, outs)| {
                        (
                            Exec::Seq(k),
                            outs,
                            NodeCtx { node, opset, tys: vec![], consts: vec![], fuse_relu: false },
                        )
                    })
                } else if let Some(j) =
                    node.input.iter().position(|n| !n.is_empty() && is_seq[slot_of[n.as_str()]])
                {
                    Err(format!("input {j} is a sequence, which {} does not take", node.op_type))
                } else {
                    let ctx = NodeCtx {
                        node,
                        opset,
                        fuse_relu: fusions.contains_key(&i),
                        tys: node
                            .input
                            .iter()
                            .map(|n| if n.is_empty() { None } else { tys[slot_of[n.as_str()]] })
                            .collect(),
                        consts: node
                            .input
                            .iter()
                            .map(|n| if n.is_empty() { None } else { consts[slot_of[n.as_str()]].clone() })
                            .collect(),
                    };
                    ops::build(&ctx).and_then(|(k, out_tys)| {
                        let wanted = ctx.n_outputs();
                        if wanted > out_tys.len() {
                            Err(format!("output {} is not supported", out_tys.len()))
                        } else {
                            let k = ops::wrapping_i8(k, &out_tys);
                            Ok((Exec::Tensor(k), out_tys.into_iter().map(|t| (t, false)).collect(), ctx))
                        }
                    })
                };
                match outcome {
                    Err(reason) => {
                        if !reason.is_empty() {
                            unsupported
                                .entry(format!("{} (opset {opset})", node.op_type))
                                .or_insert_with(|| format!("node \"{}\": {reason}", node.name));
                        }
                        for o in &node.output {
                            refused.insert(o.clone());
                        }
                    }
                    Ok((exec, out_tys, ctx)) => {
                        let all_const = matches!(exec, Exec::Tensor(_))
                            && extra.is_empty()
                            && !control
                            && ops::foldable(&node.op_type)
                            && node
                                .input
                                .iter()
                                .enumerate()
                                .all(|(j, n)| n.is_empty() || ctx.consts[j].is_some());
                        let folded = match &exec {
                            Exec::Tensor(kernel) if all_const => {
                                let args: Vec<Option<&CTensor>> =
                                    ctx.consts.iter().map(Option::as_ref).collect();
                                let r = rivet_core::panics::catch_quietly(|| kernel(&args))
                                    .map_err(|_| invalid(format!("{label} panicked on its constant inputs")))?
                                    .map_err(|e| {
                                        invalid(format!("{label} fails on its constant inputs: {e}"))
                                    })?;
                                Some(r)
                            }
                            _ => None,
                        };
                        let mut outs = Vec::new();
                        for (j, o) in node.output.iter().enumerate() {
                            if o.is_empty() {
                                outs.push(None);
                                continue;
                            }
                            let (ty, seq_out) = out_tys[j];
                            let c = match &folded {
                                Some(r) => {
                                    let t = r
                                        .get(j)
                                        .cloned()
                                        .ok_or_else(|| invalid(format!("{label} gave too few outputs")))?;
                                    if t.dtype() != ty.candle() {
                                        return Err(invalid(format!(
                                            "{label}: output {j} is {:?}, planned {ty}",
                                            t.dtype()
                                        )));
                                    }
                                    Some(t)
                                }
                                None => None,
                            };
                            let s = push(&mut tys, &mut consts, ty, c);
                            is_seq.push(seq_out);
                            slot_of.insert(o.as_str(), s);
                            defined.insert(o.clone());
                            outs.push(Some((s, ty, seq_out)));
                        }
                        if folded.is_none() {
                            let ins = node
                                .input
                                .iter()
                                .chain(&extra)
                                .map(|n| if n.is_empty() { None } else { Some(slot_of[n.as_str()]) })
                                .collect();
                            steps.push(Step { label, exec, inputs: ins, outputs: outs, free: Vec::new() });
                        }
                    }
                }
            }
            if !progressed {
                let i = rest[0];
                let missing =
                    graph.node[i].input.iter().find(|n| !n.is_empty() && !defined.contains(*n)).cloned();
                return Err(invalid(format!(
                    "node \"{}\" reads \"{}\", which nothing produces",
                    graph.node[i].name,
                    missing.unwrap_or_default()
                )));
            }
            pending = rest;
        }
        if !unsupported.is_empty() {
            return Err(PlanError::Operators(
                unsupported.into_iter().map(|(op, why)| format!("{op}: {why}")).collect(),
            ));
        }

        let mut outputs = Vec::new();
        for o in &graph.output {
            let untyped = o.r#type.is_none();
            let declared = if untyped {
                None
            } else {
                Some(value_ty(o).map_err(|e| PlanError::Unsupported(format!("output {e}")))?)
            };
            let &s = slot_of
                .get(o.name.as_str())
                .ok_or_else(|| invalid(format!("output \"{}\" is never produced", o.name)))?;
            if is_seq[s] {
                return Err(PlanError::Unsupported(format!(
                    "output \"{}\" is a sequence; Rivet's outputs are tensors",
                    o.name
                )));
            }
            let ty = tys[s].expect("every defined slot has a type");
            let declared = declared.unwrap_or(ty);
            if ty != declared {
                return Err(invalid(format!(
                    "output \"{}\" is declared {declared} but computes {ty}",
                    o.name
                )));
            }
            outputs.push((o.name.clone(), s, ty));
        }

        // Free each intermediate after its last reader.
        let mut last: HashMap<usize, usize> = HashMap::new();
        for (i, st) in steps.iter().enumerate() {
            for s in st.inputs.iter().flatten() {
                last.insert(*s, i);
            }
        }
        let keep: std::collections::HashSet<usize> = outputs.iter().map(|o| o.1).collect();
        for (s, i) in last {
            if !keep.contains(&s) {
                steps[i].free.push(s);
            }
        }
        let constants = consts.iter().map(|c| c.clone().map(Value::Tensor)).collect();
        Ok(Plan { slots: tys.len(), constants, inputs, outputs, steps })
    }

    /// Runs the plan on `feeds` (one per graph input, in order), returning the graph outputs.
    pub fn run(&self, feeds: Vec<CTensor>) -> Result<Vec<CTensor>, String> {
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
            let fail = |panicked: bool, e: String| {
                if panicked {
                    format!("{} panicked", step.label)
                } else {
                    format!("{}: {}", step.label, e)
                }
            };
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
                        .map_err(|_| fail(true, String::new()))?
                        .map_err(|e| fail(false, rivet_core::one_line(e)))?;
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
                        .map_err(|_| fail(true, String::new()))?
                        .map_err(|e| fail(false, rivet_core::one_line(e)))?;
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
                _ => Err(format!("output \"{name}\" was not computed")),
            })
            .collect()
    }

    /// Number of steps a run walks (after folding).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the plan has no steps (outputs are inputs or constants).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
