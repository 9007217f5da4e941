//! The execution plan: an ONNX graph checked, typed, constant-folded and ordered once at load,
//! so that a run is a walk over a vector of steps reading and writing numbered slots.

use std::collections::{BTreeMap, HashMap};

use candle_core::Tensor as CTensor;
use candle_onnx::onnx::{GraphProto, ModelProto};

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

/// A checked, ordered graph.
pub struct Plan {
    slots: usize,
    constants: Vec<(usize, CTensor)>,
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

/// Plans an `If` node: both branches, reading the outer values they use. Returns the kernel,
/// the output types, and the outer names to pass after the condition.
fn plan_if(
    node: &candle_onnx::onnx::NodeProto,
    opset: i64,
    outer: &[(String, Ty)],
) -> Result<(Kernel, Vec<Ty>, Vec<String>), String> {
    for a in &node.attribute {
        if a.name != "then_branch" && a.name != "else_branch" {
            return Err(format!("attribute \"{}\" is not supported", a.name));
        }
    }
    let branch = |name: &str| -> Result<&GraphProto, String> {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.g.as_ref())
            .ok_or(format!("{name} is missing"))
    };
    let (then_g, else_g) = (branch("then_branch")?, branch("else_branch")?);
    let mut free = Vec::new();
    free_names(then_g, &mut free);
    free_names(else_g, &mut free);
    let mut used = Vec::new();
    for n in &free {
        match outer.iter().find(|(o, _)| o == n) {
            Some(v) => used.push(v.clone()),
            None => return Err(format!("a branch reads \"{n}\", which nothing produces")),
        }
    }
    let plan = |g: &GraphProto| -> Result<Plan, String> {
        Plan::graph(g, opset, &used).map_err(|e| match e {
            PlanError::Operators(lines) => format!("a branch uses {}", lines.join("; ")),
            PlanError::Unsupported(w) | PlanError::Invalid(w) => format!("a branch: {w}"),
        })
    };
    let (then_p, else_p) = (plan(then_g)?, plan(else_g)?);
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
        let feeds = x[1..]
            .iter()
            .map(|t| t.cloned().ok_or_else(|| candle_core::Error::Msg("an outer value is missing".into())))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let p = if take { &then_p } else { &else_p };
        p.run(feeds).map_err(candle_core::Error::Msg)
    });
    Ok((kernel, then_t, used.into_iter().map(|u| u.0).collect()))
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
        for input in &graph.input {
            if slot_of.contains_key(input.name.as_str()) {
                continue;
            }
            let ty = value_ty(input).map_err(|e| PlanError::Unsupported(format!("input {e}")))?;
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
                let label = format!("{} \"{}\"", node.op_type, node.name);
                let depends_on_refused = node.input.iter().any(|n| refused.contains(n));
                let domain_ok = node.domain.is_empty() || node.domain == "ai.onnx";
                // An If reads, besides its condition, every outer value its branches use.
                let mut extra: Vec<String> = Vec::new();
                let outcome = if domain_ok && !depends_on_refused && node.op_type == "If" {
                    let outer_tys: Vec<(String, Ty)> = slot_of
                        .iter()
                        .filter(|(_, &s)| !is_seq[s])
                        .filter_map(|(n, &s)| tys[s].map(|t| (n.to_string(), t)))
                        .collect();
                    plan_if(node, opset, &outer_tys).map(|(k, t, free)| {
                        extra = free;
                        let ctx = NodeCtx { node, opset, tys: vec![], consts: vec![] };
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
                        (Exec::Seq(k), outs, NodeCtx { node, opset, tys: vec![], consts: vec![] })
                    })
                } else if let Some(j) =
                    node.input.iter().position(|n| !n.is_empty() && is_seq[slot_of[n.as_str()]])
                {
                    Err(format!("input {j} is a sequence, which {} does not take", node.op_type))
                } else {
                    let ctx = NodeCtx {
                        node,
                        opset,
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
                            && node.op_type != "If"
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
        let constants = consts.iter().enumerate().filter_map(|(s, c)| c.clone().map(|c| (s, c))).collect();
        Ok(Plan { slots: tys.len(), constants, inputs, outputs, steps })
    }

    /// Runs the plan on `feeds` (one per graph input, in order), returning the graph outputs.
    pub fn run(&self, feeds: Vec<CTensor>) -> Result<Vec<CTensor>, String> {
        let mut vals: Vec<Option<Value>> = vec![None; self.slots];
        for (s, c) in &self.constants {
            vals[*s] = Some(Value::Tensor(c.clone()));
        }
        for ((_, s, _), t) in self.inputs.iter().zip(feeds) {
            vals[*s] = Some(Value::Tensor(t));
        }
        let profile = profiling();
        for step in &self.steps {
            let started = profile.then(std::time::Instant::now);
            let out: Vec<Value> = match &step.exec {
                Exec::Tensor(kernel) => {
                    let args: Vec<Option<&CTensor>> = step
                        .inputs
                        .iter()
                        .map(|s| match s.and_then(|s| vals[s].as_ref()) {
                            Some(Value::Tensor(t)) => Some(t),
                            _ => None,
                        })
                        .collect();
                    rivet_core::panics::catch_quietly(|| kernel(&args))
                        .map_err(|_| format!("{} panicked", step.label))?
                        .map_err(|e| format!("{}: {}", step.label, rivet_core::one_line(e)))?
                        .into_iter()
                        .map(Value::Tensor)
                        .collect()
                }
                Exec::Seq(kernel) => {
                    let args: Vec<Option<&Value>> =
                        step.inputs.iter().map(|s| s.and_then(|s| vals[s].as_ref())).collect();
                    rivet_core::panics::catch_quietly(|| kernel(&args))
                        .map_err(|_| format!("{} panicked", step.label))?
                        .map_err(|e| format!("{}: {}", step.label, rivet_core::one_line(e)))?
                }
            };
            if out.len() < step.outputs.len() {
                return Err(format!("{} gave {} outputs", step.label, out.len()));
            }
            for (j, (o, v)) in step.outputs.iter().zip(out).enumerate() {
                let Some((s, ty, seq)) = *o else { continue };
                let ok = match &v {
                    Value::Tensor(t) => !seq && t.dtype() == ty.candle(),
                    Value::Seq(ts) => seq && ts.iter().all(|t| t.dtype() == ty.candle()),
                };
                if !ok {
                    return Err(format!("{}: output {j} is not the {ty} value that was planned", step.label));
                }
                vals[s] = Some(v);
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
            .map(|(name, s, _)| match vals[*s].clone() {
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
