//! The passes that plan a graph, in the order [`Plan`](super::Plan) runs them: [`import`] gives
//! initializers, inputs and outer values their slots; [`fuse`] rewrites the node list so that
//! a Gemm or Conv applies the Relu that alone reads it; [`order`] sorts the nodes so that each
//! comes after what it reads; [`build`] looks each node up in the operator registry, builds its
//! kernel and evaluates it once when its inputs are all constant; [`outputs`] checks the graph's
//! outputs; [`free_after_last_use`] frees each slot after its last reader.

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::Tensor as CTensor;
use candle_onnx::onnx::{GraphProto, NodeProto, ValueInfoProto};

use super::control::{free_names, plan_if, plan_loop, plan_scan};
use super::{Exec, PlanError, Step};
use crate::ops::registry::{Builder, OpDef};
use crate::ops::sequence::Value;
use crate::ops::{self, NodeCtx, Refusal};
use crate::proto::{tensor_from_proto, ProtoError};
use crate::ty::Ty;

/// The values of a graph being planned: each name's slot, and each slot's type, whether it
/// holds a sequence, and its value where it is a constant.
pub(super) struct Slots<'g> {
    slot_of: HashMap<&'g str, usize>,
    tys: Vec<Ty>,
    seq: Vec<bool>,
    consts: Vec<Option<CTensor>>,
    /// The graph's inputs (its own, then the outer values it reads): name, slot and type.
    pub(super) inputs: Vec<(String, usize, Ty)>,
}

impl<'g> Slots<'g> {
    fn push(&mut self, name: &'g str, ty: Ty, seq: bool, value: Option<CTensor>) -> usize {
        self.tys.push(ty);
        self.seq.push(seq);
        self.consts.push(value);
        let s = self.tys.len() - 1;
        self.slot_of.insert(name, s);
        s
    }

    fn slot(&self, name: &str) -> Option<usize> {
        self.slot_of.get(name).copied()
    }

    /// The type and kind (sequence or not) of each input of `node` (`None` for an omitted one).
    fn kinds(&self, node: &NodeProto) -> Vec<Option<(Ty, bool)>> {
        node.input.iter().map(|n| self.slot(n).map(|s| (self.tys[s], self.seq[s]))).collect()
    }

    /// How many slots there are.
    pub(super) fn len(&self) -> usize {
        self.tys.len()
    }

    /// Each slot's constant value, where it has one.
    pub(super) fn constants(&self) -> Vec<Option<Value>> {
        self.consts.iter().map(|c| c.clone().map(Value::Tensor)).collect()
    }
}

/// A value's declared element type.
fn value_ty(v: &ValueInfoProto, role: &str) -> Result<Ty, PlanError> {
    use candle_onnx::onnx::type_proto::Value;
    let unsupported = |why: String| PlanError::Unsupported(format!("{role} \"{}\" {why}", v.name));
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::TensorType(tt)) => Ty::from_onnx(tt.elem_type).ok_or_else(|| {
            unsupported(format!("has element type {}, which Candle cannot hold", Ty::onnx_name(tt.elem_type)))
        }),
        Some(_) => {
            Err(unsupported("is not a tensor (sequences, maps and optionals are not supported)".into()))
        }
        None => Err(unsupported("has no type".into())),
    }
}

/// Pass 1: slots for the initializers (constants), the graph's inputs and the outer values it
/// reads. `formal[i]` types the `i`-th input where the graph leaves it untyped.
pub(super) fn import<'g>(
    graph: &'g GraphProto,
    outer: &'g [(String, Ty)],
    formal: &[Option<Ty>],
) -> Result<Slots<'g>, PlanError> {
    let mut slots = Slots {
        slot_of: HashMap::new(),
        tys: Vec::new(),
        seq: Vec::new(),
        consts: Vec::new(),
        inputs: Vec::new(),
    };
    for init in &graph.initializer {
        let (t, ty) = tensor_from_proto(init).map_err(|e| match e {
            ProtoError::Unsupported(why) => PlanError::Unsupported(format!("initializer {why}")),
            ProtoError::Invalid(why) => PlanError::Invalid(why),
        })?;
        slots.push(&init.name, ty, false, Some(t));
    }
    for (i, input) in graph.input.iter().enumerate() {
        if slots.slot(&input.name).is_some() {
            continue;
        }
        let ty = match formal.get(i).copied().flatten() {
            Some(t) if input.r#type.is_none() => t,
            _ => value_ty(input, "input")?,
        };
        let s = slots.push(&input.name, ty, false, None);
        slots.inputs.push((input.name.clone(), s, ty));
    }
    for (name, ty) in outer {
        if slots.slot(name).is_some() {
            continue;
        }
        let s = slots.push(name, *ty, false, None);
        slots.inputs.push((name.clone(), s, *ty));
    }
    Ok(slots)
}

/// A node as the plan builds it: the graph's node, the names its outputs take, whether its
/// kernel applies the Relu that was fused into it, and the other operand of an Add fused into
/// it (the name it is read from, and whether it was the Add's first operand).
pub(super) struct PlanNode<'g> {
    proto: &'g NodeProto,
    outputs: Vec<&'g str>,
    fuse_relu: bool,
    fuse_add: Option<(&'g str, bool)>,
    /// A 2×2 MaxPool that reads the node's output alone (see [`fuse`]).
    fuse_pool: Option<&'g NodeProto>,
}

/// Whether `n` is a MaxPool of a 2×2 window, stride 2, no padding or dilation and no ceil mode,
/// with one output (no indices): the pooling a Conv runs in its own pass when it is the only
/// reader of the Conv's output. Any attribute it does not know leaves it unfused (for
/// MaxPool's own builder to refuse).
fn max_pool_2x2(n: &NodeProto) -> bool {
    let ints = |name: &str| n.attribute.iter().find(|a| a.name == name).map(|a| a.ints.as_slice());
    let int = |name: &str| n.attribute.iter().find(|a| a.name == name).map(|a| a.i);
    let auto_pad = n.attribute.iter().find(|a| a.name == "auto_pad").map(|a| a.s.as_slice());
    let known = ["kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad", "storage_order"];
    n.op_type == "MaxPool"
        && (n.domain.is_empty() || n.domain == "ai.onnx")
        && n.input.len() == 1
        && (n.output.len() == 1 || (n.output.len() == 2 && n.output[1].is_empty()))
        && n.attribute.iter().all(|a| known.contains(&a.name.as_str()))
        && ints("kernel_shape") == Some(&[2, 2])
        && ints("strides") == Some(&[2, 2])
        && ints("pads").is_none_or(|p| p.len() == 4 && p.iter().all(|&v| v == 0))
        && ints("dilations").is_none_or(|d| d == [1, 1])
        && int("ceil_mode").is_none_or(|c| c == 0)
        && auto_pad.is_none_or(|a| a == b"NOTSET" || a == b"VALID")
}

/// Pass 2: the node list with each Relu that is the only reader of a fusing operator's output
/// (registered with `fuses_relu`: Gemm, Conv) folded into that operator: the Relu node is gone,
/// and its producer writes the Relu's output and applies it. The Relu must read nothing else,
/// and its input must not be read by any other node, subgraph or graph output.
///
/// Likewise, from opset 7, each Add of a MatMul's output and a vector initializer of the type of
/// the MatMul's weights (an initializer too: a bias, as `nn.Linear` on a sequence exports) that
/// is the only reader of that output: the MatMul writes
/// the Add's output, the vector read as its third input (see `ops::gemm`'s `build_matmul`).
/// And each such Add of a Conv's output and any other value (a residual block's shortcut): the
/// Conv writes the Add's output, the other operand read after the Conv's own inputs (see
/// `ops::conv`'s `build_conv`), and a Relu that is the only reader of the Add's output is
/// folded in after it.
///
/// And each MaxPool of a 2×2 window and stride 2 ([`max_pool_2x2`]) that is the only reader of
/// a Conv's output (or of the Relu fused into it; a Conv with a fused Add keeps its pool): the
/// Conv writes the pool's output and runs the pool's kernel, built by MaxPool's own builder,
/// after its own (see `ops::conv`'s `build_conv`), where its direct kernel does not pool in
/// the same pass.
pub(super) fn fuse(graph: &GraphProto, opset: i64) -> Vec<PlanNode<'_>> {
    let default = |n: &NodeProto| n.domain.is_empty() || n.domain == "ai.onnx";
    let plain_relu =
        |n: &NodeProto| n.op_type == "Relu" && default(n) && n.input.len() == 1 && n.output.len() == 1;
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
    // Producer → the Relu it applies.
    let mut fused: HashMap<usize, usize> = HashMap::new();
    for (j, node) in graph.node.iter().enumerate() {
        if !plain_relu(node) {
            continue;
        }
        let x = node.input[0].as_str();
        let Some(&p) = producer.get(x) else { continue };
        let prod = &graph.node[p];
        let fusable = ops::lookup(&prod.domain, &prod.op_type, opset).is_ok_and(|d| d.fuses_relu)
            && prod.output.len() == 1
            && readers.get(x) == Some(&1);
        if fusable {
            fused.insert(p, j);
        }
    }
    // MatMul or Conv → (the Add after it, the Add's other operand, whether that operand is the
    // Add's first input). Initializers' element types; a MatMul's bias must have its weights'
    // (else the Add stays, to refuse the mix itself). A Conv's operand is checked when the
    // node is built, when its type is known.
    let elem: HashMap<&str, i32> = graph.initializer.iter().map(|t| (t.name.as_str(), t.data_type)).collect();
    let vectors: HashSet<&str> =
        graph.initializer.iter().filter(|t| t.dims.len() == 1).map(|t| t.name.as_str()).collect();
    let mut biased: HashMap<usize, (usize, &str, bool)> = HashMap::new();
    for (j, node) in graph.node.iter().enumerate() {
        let plain = node.op_type == "Add" && default(node) && opset >= 7 && node.attribute.is_empty();
        if !plain || node.input.len() != 2 || node.output.len() != 1 {
            continue;
        }
        for (x, first) in [(0, false), (1, true)] {
            let (product, bias) = (node.input[x].as_str(), node.input[1 - x].as_str());
            let Some(&p) = producer.get(product).filter(|_| !bias.is_empty()) else { continue };
            let prod = &graph.node[p];
            let sole = default(prod)
                && prod.output.len() == 1
                && readers.get(product) == Some(&1)
                && !biased.contains_key(&p)
                && !fused.contains_key(&p);
            let bias_of_product = prod.op_type == "MatMul"
                && vectors.contains(bias)
                && prod.input.get(1).and_then(|w| elem.get(w.as_str())) == elem.get(bias);
            let fusable = sole && (bias_of_product || prod.op_type == "Conv");
            if fusable {
                biased.insert(p, (j, bias, first));
                break;
            }
        }
    }
    // A Conv's fused Add → the Relu after it, the only reader of the Add's output.
    let add_of: HashMap<&str, usize> = biased
        .iter()
        .filter(|(&p, _)| graph.node[p].op_type == "Conv")
        .map(|(&p, &(j, _, _))| (graph.node[j].output[0].as_str(), p))
        .collect();
    for (k, node) in graph.node.iter().enumerate() {
        if !plain_relu(node) {
            continue;
        }
        let x = node.input[0].as_str();
        if let Some(&p) = add_of.get(x).filter(|_| readers.get(x) == Some(&1)) {
            fused.insert(p, k);
        }
    }
    // A Conv (with its Relu, if fused, but no Add) → the 2×2 MaxPool that alone reads its output.
    let mut pooled: HashMap<usize, usize> = HashMap::new();
    for (k, node) in graph.node.iter().enumerate() {
        if !max_pool_2x2(node) {
            continue;
        }
        let x = node.input[0].as_str();
        let Some(&q) = producer.get(x) else { continue };
        // The Conv whose output (or fused Relu's) the pool reads.
        let conv = fused.iter().find(|(_, &r)| r == q).map_or(q, |(&p, _)| p);
        let prod = &graph.node[conv];
        let fusable = prod.op_type == "Conv"
            && default(prod)
            && prod.output.len() == 1
            && !biased.contains_key(&conv)
            && readers.get(x) == Some(&1);
        if fusable {
            pooled.insert(conv, k);
        }
    }
    let gone: HashSet<usize> =
        fused.values().chain(biased.values().map(|(j, _, _)| j)).chain(pooled.values()).copied().collect();
    graph
        .node
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(i, node)| {
            // The node writes the output of the last node fused into it: the pool, else the
            // Relu, else the Add.
            let last = pooled.get(&i).or(fused.get(&i)).or(biased.get(&i).map(|(j, _, _)| j));
            PlanNode {
                proto: node,
                outputs: match last {
                    Some(&j) => vec![graph.node[j].output[0].as_str()],
                    None => node.output.iter().map(String::as_str).collect(),
                },
                fuse_relu: fused.contains_key(&i),
                fuse_add: biased.get(&i).map(|&(_, other, first)| (other, first)),
                fuse_pool: pooled.get(&i).map(|&k| &graph.node[k]),
            }
        })
        .collect()
}

/// Pass 3: the nodes in an order where each comes after every node producing what it reads,
/// its subgraphs' reads included (ONNX requires graphs to be so ordered already; one that is not
/// is ordered here, keeping the graph's order where it can).
pub(super) fn order(nodes: &[PlanNode<'_>], slots: &Slots<'_>) -> Result<Vec<usize>, PlanError> {
    let produced: HashSet<&str> = nodes.iter().flat_map(|n| n.outputs.iter().copied()).collect();
    // What each node waits for: its inputs, and the values its subgraphs read that a node of
    // this graph produces (anything else they read is the enclosing graph's, or missing, which
    // planning the subgraph reports).
    let waits: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let mut names: Vec<String> = n.proto.input.iter().filter(|i| !i.is_empty()).cloned().collect();
            // A fused Add's other operand is read too.
            names.extend(n.fuse_add.map(|(other, _)| other.to_string()));
            for a in &n.proto.attribute {
                if let Some(g) = &a.g {
                    let mut inner = Vec::new();
                    free_names(g, &mut inner);
                    names.extend(inner.into_iter().filter(|x| produced.contains(x.as_str())));
                }
            }
            names
        })
        .collect();
    let mut defined: HashSet<&str> = slots.slot_of.keys().copied().collect();
    let mut pending: Vec<usize> = (0..nodes.len()).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while !pending.is_empty() {
        let mut rest = Vec::new();
        for &i in &pending {
            if waits[i].iter().all(|n| defined.contains(n.as_str())) {
                order.push(i);
                defined.extend(nodes[i].outputs.iter().copied());
            } else {
                rest.push(i);
            }
        }
        if rest.len() == pending.len() {
            let node = nodes[rest[0]].proto;
            let missing =
                waits[rest[0]].iter().find(|n| !defined.contains(n.as_str())).cloned().unwrap_or_default();
            return Err(PlanError::Invalid(format!(
                "node \"{}\" reads \"{missing}\", which nothing produces",
                node.name
            )));
        }
        pending = rest;
    }
    Ok(order)
}

/// What building a node gives: how it runs, its outputs' types and kinds, the constant values
/// of its inputs (for folding), and the outer values it reads after its own inputs.
struct Built {
    exec: Exec,
    outputs: Vec<(Ty, bool)>,
    consts: Vec<Option<CTensor>>,
    extra: Vec<String>,
}

/// Builds one node whose inputs are all available: by the registry's definition of its
/// operator at `opset`.
fn build_node(node: &PlanNode<'_>, def: &OpDef, opset: i64, slots: &Slots<'_>) -> Result<Built, Refusal> {
    let proto = node.proto;
    let kinds = slots.kinds(proto);
    match def.builder {
        Builder::Control => {
            let outer: Vec<(String, Ty)> = slots
                .slot_of
                .iter()
                .filter(|(_, &s)| !slots.seq[s])
                .map(|(n, &s)| (n.to_string(), slots.tys[s]))
                .collect();
            let in_tys: Vec<Option<Ty>> =
                kinds.iter().map(|k| k.and_then(|(t, seq)| (!seq).then_some(t))).collect();
            let (kernel, tys, extra) = match proto.op_type.as_str() {
                "If" => plan_if(proto, opset, &outer)?,
                "Loop" => plan_loop(proto, opset, &outer, &in_tys)?,
                "Scan" => plan_scan(proto, opset, &outer, &in_tys)?,
                other => return Err(refuse!("{other} is not a control-flow operator")),
            };
            Ok(Built {
                exec: Exec::Tensor(kernel),
                outputs: tys.into_iter().map(|t| (t, false)).collect(),
                consts: vec![],
                extra,
            })
        }
        Builder::Sequence(build) => {
            let (kernel, outputs) = build(proto, opset, &kinds)?;
            Ok(Built { exec: Exec::Seq(kernel), outputs, consts: vec![], extra: vec![] })
        }
        Builder::Tensor(build) => {
            if let Some(j) = kinds.iter().position(|k| k.is_some_and(|(_, seq)| seq)) {
                return Err(refuse!("input {j} is a sequence, which {} does not take", proto.op_type));
            }
            // A fused Add's other operand: a tensor of the node's input type, as the Add needs.
            if let Some((other, _)) = node.fuse_add {
                let own = kinds.first().copied().flatten().map(|(t, _)| t);
                match slots.slot(other).map(|s| (slots.tys[s], slots.seq[s])) {
                    Some((_, true)) => return Err(refuse!("the Add after it reads \"{other}\", a sequence")),
                    Some((t, false)) if own.is_some_and(|o| o != t) => {
                        let own = own.map(|o| o.to_string()).unwrap_or_default();
                        return Err(refuse!("the Add after it adds {t} \"{other}\" to its {own} output"));
                    }
                    _ => {}
                }
            }
            // A fused MaxPool, built by its own builder for the Conv's output type (the
            // Conv's input type): refused as it would be alone.
            let pool_after = match node.fuse_pool {
                Some(pool) => {
                    let built =
                        ops::lookup(&pool.domain, &pool.op_type, opset).and_then(|d| match d.builder {
                            Builder::Tensor(build) => build(&NodeCtx {
                                node: pool,
                                opset,
                                tys: vec![kinds.first().copied().flatten().map(|(t, _)| t)],
                                consts: vec![None],
                                fuse_relu: false,
                                fuse_add: None,
                                pool_after: None,
                            }),
                            _ => Err(refuse!("not a tensor operator")),
                        });
                    let (kernel, _) =
                        built.map_err(|e| refuse!("the MaxPool \"{}\" after it: {e}", pool.name))?;
                    Some(std::sync::Arc::new(kernel))
                }
                None => None,
            };
            let ctx = NodeCtx {
                node: proto,
                opset,
                fuse_relu: node.fuse_relu,
                fuse_add: node.fuse_add.map(|(_, first)| first),
                pool_after,
                tys: kinds.iter().map(|k| k.map(|(t, _)| t)).collect(),
                consts: proto
                    .input
                    .iter()
                    .map(|n| slots.slot(n).and_then(|s| slots.consts[s].clone()))
                    .collect(),
            };
            let (kernel, tys) = build(&ctx)?;
            if ctx.n_outputs() > tys.len() {
                return Err(refuse!("output {} is not supported", tys.len()));
            }
            let kernel = ops::wrapping_i8(kernel, &tys);
            Ok(Built {
                exec: Exec::Tensor(kernel),
                outputs: tys.into_iter().map(|t| (t, false)).collect(),
                consts: ctx.consts,
                extra: node.fuse_add.map(|(bias, _)| vec![bias.to_string()]).unwrap_or_default(),
            })
        }
    }
}

/// Pass 4: every node, in `order`, looked up in the operator registry and built; a node whose
/// inputs are all constant (and whose operator is foldable) is evaluated now and its outputs
/// become constants. Every node the executor refuses is collected, one line per operator and
/// opset with the first node's reason; the nodes that read a refused one are skipped.
pub(super) fn build<'g>(
    nodes: &[PlanNode<'g>],
    order: &[usize],
    opset: i64,
    slots: &mut Slots<'g>,
) -> Result<Vec<Step>, PlanError> {
    let mut refused: HashSet<&str> = HashSet::new();
    let mut unsupported: BTreeMap<String, String> = BTreeMap::new();
    let mut steps = Vec::new();
    for &i in order {
        let node = &nodes[i];
        let proto = node.proto;
        if proto.input.iter().any(|n| refused.contains(n.as_str())) {
            refused.extend(node.outputs.iter().copied());
            continue;
        }
        let label = format!("{} \"{}\"", proto.op_type, proto.name);
        let built = ops::lookup(&proto.domain, &proto.op_type, opset)
            .and_then(|def| build_node(node, def, opset, slots).map(|b| (def, b)));
        let (def, built) = match built {
            Ok(b) => b,
            Err(reason) => {
                unsupported
                    .entry(format!("{} (opset {opset})", proto.op_type))
                    .or_insert_with(|| format!("node \"{}\": {reason}", proto.name));
                refused.extend(node.outputs.iter().copied());
                continue;
            }
        };
        // A fused bias is an extra input the constant arguments below do not hold.
        let foldable = def.foldable
            && matches!(def.builder, Builder::Tensor(_))
            && built.extra.is_empty()
            && proto.input.iter().enumerate().all(|(j, n)| n.is_empty() || built.consts[j].is_some());
        let folded = match &built.exec {
            Exec::Tensor(kernel) if foldable => {
                let args: Vec<Option<&CTensor>> = built.consts.iter().map(Option::as_ref).collect();
                let values = rivet_core::panics::catch_quietly(|| kernel(&args))
                    .map_err(|_| PlanError::Invalid(format!("{label} panicked on its constant inputs")))?
                    .map_err(|e| PlanError::Invalid(format!("{label} fails on its constant inputs: {e}")))?;
                Some(values)
            }
            _ => None,
        };
        let mut outs = Vec::new();
        for (j, &o) in node.outputs.iter().enumerate() {
            if o.is_empty() {
                outs.push(None);
                continue;
            }
            let (ty, seq) = built.outputs[j];
            let value = match &folded {
                Some(values) => {
                    let t = values
                        .get(j)
                        .cloned()
                        .ok_or_else(|| PlanError::Invalid(format!("{label} gave too few outputs")))?;
                    if t.dtype() != ty.candle() {
                        return Err(PlanError::Invalid(format!(
                            "{label}: output {j} is {:?}, planned {ty}",
                            t.dtype()
                        )));
                    }
                    Some(t)
                }
                None => None,
            };
            let s = slots.push(o, ty, seq, value);
            outs.push(Some((s, ty, seq)));
        }
        if folded.is_none() {
            let inputs = proto
                .input
                .iter()
                .chain(&built.extra)
                .map(|n| if n.is_empty() { None } else { slots.slot(n) })
                .collect();
            steps.push(Step { label, exec: built.exec, inputs, outputs: outs, free: Vec::new() });
        }
    }
    if !unsupported.is_empty() {
        return Err(PlanError::Operators(
            unsupported.into_iter().map(|(op, why)| format!("{op}: {why}")).collect(),
        ));
    }
    Ok(steps)
}

/// Pass 5: the graph's outputs (name, slot, type), each computed, a tensor, and of its declared
/// type.
pub(super) fn outputs(graph: &GraphProto, slots: &Slots<'_>) -> Result<Vec<(String, usize, Ty)>, PlanError> {
    let mut outputs = Vec::new();
    for o in &graph.output {
        let declared = if o.r#type.is_none() { None } else { Some(value_ty(o, "output")?) };
        let s = slots
            .slot(&o.name)
            .ok_or_else(|| PlanError::Invalid(format!("output \"{}\" is never produced", o.name)))?;
        if slots.seq[s] {
            return Err(PlanError::Unsupported(format!(
                "output \"{}\" is a sequence; Rivet's outputs are tensors",
                o.name
            )));
        }
        let ty = slots.tys[s];
        let declared = declared.unwrap_or(ty);
        if ty != declared {
            return Err(PlanError::Invalid(format!(
                "output \"{}\" is declared {declared} but computes {ty}",
                o.name
            )));
        }
        outputs.push((o.name.clone(), s, ty));
    }
    Ok(outputs)
}

/// Pass 6: each intermediate slot freed by the step that reads it last.
pub(super) fn free_after_last_use(mut steps: Vec<Step>, outputs: &[(String, usize, Ty)]) -> Vec<Step> {
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (i, st) in steps.iter().enumerate() {
        for s in st.inputs.iter().flatten() {
            last.insert(*s, i);
        }
    }
    let keep: HashSet<usize> = outputs.iter().map(|o| o.1).collect();
    for (s, i) in last {
        if !keep.contains(&s) {
            steps[i].free.push(s);
        }
    }
    steps
}
