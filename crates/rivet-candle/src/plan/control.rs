//! Control flow: `If`, `Loop` and `Scan`, whose subgraphs are planned at load like the graph
//! around them and run by the node's kernel.

use candle_core::Tensor as CTensor;
use candle_onnx::onnx::{GraphProto, NodeProto};

use super::{Plan, PlanError};
use crate::ops::{self, Kernel, Refusal};
use crate::ty::Ty;

/// Every name `graph`'s nodes (and their subgraphs) read that nothing inside defines.
pub(super) fn free_names(graph: &GraphProto, out: &mut Vec<String>) {
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
fn outer_used(graphs: &[&GraphProto], outer: &[(String, Ty)]) -> Result<Vec<(String, Ty)>, Refusal> {
    let mut free = Vec::new();
    for g in graphs {
        free_names(g, &mut free);
    }
    let mut used = Vec::new();
    for n in &free {
        match outer.iter().find(|(o, _)| o == n) {
            Some(v) => used.push(v.clone()),
            None => return Err(refuse!("a subgraph reads \"{n}\", which nothing produces")),
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
) -> Result<Plan, Refusal> {
    Plan::typed_graph(g, opset, used, formal).map_err(|e| match e {
        PlanError::Operators(lines) => refuse!("{what} uses {}", lines.join("; ")),
        PlanError::Unsupported(w) | PlanError::Invalid(w) => refuse!("{what}: {w}"),
    })
}

/// The graph attribute `name` of `node`.
fn graph_attr<'a>(node: &'a NodeProto, name: &str) -> Result<&'a GraphProto, Refusal> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.g.as_ref())
        .ok_or(refuse!("{name} is missing"))
}

/// What planning a control-flow node gives: its kernel, its output types and the outer names
/// to pass after its own inputs.
pub(super) type Control = (Kernel, Vec<Ty>, Vec<String>);

/// Plans an `If` node: both branches, reading the outer values they use.
pub(super) fn plan_if(node: &NodeProto, opset: i64, outer: &[(String, Ty)]) -> Result<Control, Refusal> {
    for a in &node.attribute {
        if a.name != "then_branch" && a.name != "else_branch" {
            return Err(refuse!("attribute \"{}\" is not supported", a.name));
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
        return Err(refuse!("{} outputs for branches giving {}", node.output.len(), then_t.len()));
    }
    let kernel: Kernel = Box::new(move |x| {
        let cond = ops::req(x, 0)?;
        if cond.elem_count() != 1 {
            candle_core::bail!("the condition must hold one value, got {:?}", cond.dims());
        }
        let take = ops::ints(cond)?[0] != 0;
        let p = if take { &then_p } else { &else_p };
        p.run(given(&x[1..])?).map_err(|e| candle_core::Error::Msg(e.to_string()))
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
pub(super) fn plan_loop(
    node: &NodeProto,
    opset: i64,
    outer: &[(String, Ty)],
    in_tys: &[Option<Ty>],
) -> Result<Control, Refusal> {
    for a in &node.attribute {
        if a.name != "body" {
            return Err(refuse!("attribute \"{}\" is not supported", a.name));
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
        return Err(refuse!(
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
            return Err(refuse!("loop-carried value {j} is {want} but the body takes or gives another type"));
        }
    }
    let out_tys: Vec<Ty> = body.outputs[1..].iter().map(|o| o.2).collect();
    if node.output.len() > out_tys.len() {
        return Err(refuse!("{} outputs for a body giving {}", node.output.len(), out_tys.len()));
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
            let mut outs = body.run(feeds).map_err(|e| candle_core::Error::Msg(e.to_string()))?.into_iter();
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

/// Plans a `Scan` node (opset 9 and later: the registry refuses the earlier form, with a batch
/// axis): its body, reading the outer values it uses.
pub(super) fn plan_scan(
    node: &NodeProto,
    opset: i64,
    outer: &[(String, Ty)],
    in_tys: &[Option<Ty>],
) -> Result<Control, Refusal> {
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
            return Err(refuse!("attribute \"{}\" is not supported", a.name));
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
        return Err(refuse!("num_scan_inputs {m} for {} inputs", node.input.len()));
    }
    let n = node.input.len() - m;
    let body_g = graph_attr(node, "body")?;
    let used = outer_used(&[body_g], outer)?;
    // A scan input's slice has the input's type.
    let body = plan_sub(body_g, opset, &used, in_tys, "the body")?;
    let formal = body.inputs.len() - used.len();
    if formal != n + m || body.outputs.len() < n {
        return Err(refuse!(
            "the body takes {formal} inputs and gives {} outputs for {n} states and {m} scan inputs",
            body.outputs.len()
        ));
    }
    for j in 0..n + m {
        let want = in_tys.get(j).copied().flatten().ok_or("an input is missing")?;
        if body.inputs[j].2 != want || (j < n && body.outputs[j].2 != want) {
            return Err(refuse!("input {j} is {want} but the body takes or gives another type"));
        }
    }
    let k = body.outputs.len() - n;
    let list = |name: &str, len: usize| -> Result<Vec<i64>, Refusal> {
        let v = ints.get(name).cloned().unwrap_or_else(|| vec![0; len]);
        if v.len() != len {
            return Err(refuse!("{name} has {} entries for {len} values", v.len()));
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
        return Err(refuse!("{} outputs for a body giving {}", node.output.len(), out_tys.len()));
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
            let mut outs = body.run(feeds).map_err(|e| candle_core::Error::Msg(e.to_string()))?.into_iter();
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
