//! The operator registry: one table from (domain, operator, opset range) to the builder that
//! checks a node at load and makes its kernel, with the properties the plan needs of each
//! operator. Each family of operators fills its part in its `register` function; the plan
//! looks every node up here, `rivet inspect --ops` lists the table and the Candle guide's
//! operator list is generated from it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use candle_onnx::onnx::NodeProto;

use super::sequence::SeqKernel;
use super::{Built, NodeCtx, Refusal};
use crate::ty::Ty;

/// Checks a tensor operator's node and makes its kernel.
pub type TensorBuilder = fn(&NodeCtx<'_>) -> Result<Built, Refusal>;

/// Checks a sequence operator's node, given each input's type and whether it is a sequence.
pub type SequenceBuilder =
    fn(&NodeProto, i64, &[Option<(Ty, bool)>]) -> Result<(SeqKernel, Vec<(Ty, bool)>), Refusal>;

/// How a node of an operator is made ready to run.
#[derive(Clone, Copy)]
pub enum Builder {
    /// Tensors in, tensors out.
    Tensor(TensorBuilder),
    /// Sequences of tensors in or out (inside a graph only).
    Sequence(SequenceBuilder),
    /// Control flow (`If`, `Loop`, `Scan`): the plan plans its subgraphs.
    Control,
}

/// One operator at a range of opsets.
#[derive(Clone, Copy)]
pub struct OpDef {
    /// The operator's domain: `""` is ONNX's default domain, `ai.onnx`.
    pub domain: &'static str,
    /// The operator's name, as a node's `op_type` spells it.
    pub name: &'static str,
    /// The first opset of the domain this definition handles.
    pub since: i64,
    /// The last opset it handles; `None`: every later one.
    pub until: Option<i64>,
    /// The family it belongs to (the Candle guide groups the list by it).
    pub family: &'static str,
    /// How its nodes are built.
    pub builder: Builder,
    /// Whether its result depends only on its inputs, so a node whose inputs are all constant
    /// is evaluated once at load (not so for the random operators).
    pub foldable: bool,
    /// Whether its kernel can apply a Relu that is its output's only reader (the plan then
    /// drops the Relu node and tells the builder through [`NodeCtx::fuse_relu`]).
    pub fuses_relu: bool,
}

impl OpDef {
    /// A tensor operator of the default domain at every opset, foldable, not fusing a Relu.
    pub const fn tensor(family: &'static str, name: &'static str, build: TensorBuilder) -> OpDef {
        OpDef { builder: Builder::Tensor(build), ..OpDef::base(family, name) }
    }

    /// A sequence operator of the default domain at every opset.
    pub const fn sequence(name: &'static str, build: SequenceBuilder) -> OpDef {
        OpDef { builder: Builder::Sequence(build), ..OpDef::base("sequence", name) }
    }

    /// A control-flow operator of the default domain, planned by the plan itself.
    pub const fn control(name: &'static str) -> OpDef {
        OpDef { builder: Builder::Control, ..OpDef::base("control flow", name) }
    }

    const fn base(family: &'static str, name: &'static str) -> OpDef {
        OpDef {
            domain: "",
            name,
            since: 1,
            until: None,
            family,
            builder: Builder::Control,
            foldable: true,
            fuses_relu: false,
        }
    }

    /// This definition for opsets `since` and later only.
    pub const fn since(mut self, since: i64) -> OpDef {
        self.since = since;
        self
    }

    /// This definition for opsets up to `until` only: an operator whose semantics change at a
    /// later opset is registered once per range.
    pub const fn until(mut self, until: i64) -> OpDef {
        self.until = Some(until);
        self
    }

    /// This operator draws random values: never evaluated at load.
    pub const fn random(mut self) -> OpDef {
        self.foldable = false;
        self
    }

    /// This operator's kernel applies a Relu that reads only its output.
    pub const fn fuses_relu(mut self) -> OpDef {
        self.fuses_relu = true;
        self
    }

    /// Whether this definition handles `opset`.
    pub fn covers(&self, opset: i64) -> bool {
        opset >= self.since && self.until.is_none_or(|u| opset <= u)
    }

    fn overlaps(&self, other: &OpDef) -> bool {
        let end = |d: &OpDef| d.until.unwrap_or(i64::MAX);
        self.since <= end(other) && other.since <= end(self)
    }

    /// The opsets it handles, as `"7"`, `"7–12"` or `"7+"`.
    pub fn opsets(&self) -> String {
        match self.until {
            None => format!("{}+", self.since),
            Some(u) if u == self.since => u.to_string(),
            Some(u) => format!("{}–{u}", self.since),
        }
    }
}

/// Why the registry could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Two definitions of one operator cover a common opset.
    Duplicate {
        /// The operator's domain (`""`: the default one).
        domain: &'static str,
        /// The operator.
        name: &'static str,
        /// The opsets the definition already registered covers.
        first: String,
        /// The opsets the second one covers.
        second: String,
    },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Duplicate { domain, name, first, second } => {
                let domain = if domain.is_empty() { "ai.onnx" } else { domain };
                write!(f, "operator {domain}.{name} is registered twice: opsets {first} and {second} overlap")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// The operators the executor implements.
#[derive(Default)]
pub struct Registry {
    /// Every definition, by operator name (of any domain).
    ops: BTreeMap<&'static str, Vec<OpDef>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `def`; an error when a definition of the same operator covers one of its opsets.
    pub fn add(&mut self, def: OpDef) -> Result<(), RegistryError> {
        let defs = self.ops.entry(def.name).or_default();
        if let Some(old) = defs.iter().find(|d| d.domain == def.domain && d.overlaps(&def)) {
            return Err(RegistryError::Duplicate {
                domain: def.domain,
                name: def.name,
                first: old.opsets(),
                second: def.opsets(),
            });
        }
        defs.push(def);
        defs.sort_by_key(|d| (d.domain, d.since));
        Ok(())
    }

    /// Adds every definition of `defs`.
    pub fn add_all(&mut self, defs: impl IntoIterator<Item = OpDef>) -> Result<(), RegistryError> {
        defs.into_iter().try_for_each(|d| self.add(d))
    }

    /// The definition of `name` in `domain` (`""` or `ai.onnx`: the default one) at `opset`.
    pub fn find(&self, domain: &str, name: &str, opset: i64) -> Lookup<'_> {
        let domain = if domain == "ai.onnx" { "" } else { domain };
        let defs: Vec<&OpDef> =
            self.ops.get(name).into_iter().flatten().filter(|d| d.domain == domain).collect();
        if defs.is_empty() {
            return Lookup::Unknown;
        }
        match defs.iter().find(|d| d.covers(opset)) {
            Some(d) => Lookup::Found(d),
            None => Lookup::OtherOpsets(defs.iter().map(|d| d.opsets()).collect::<Vec<_>>().join(", ")),
        }
    }

    /// Every definition, by name.
    pub fn iter(&self) -> impl Iterator<Item = &OpDef> {
        self.ops.values().flatten()
    }
}

/// What the registry knows of an operator at an opset.
pub enum Lookup<'a> {
    /// Its definition at that opset.
    Found(&'a OpDef),
    /// It is implemented, at these other opsets only.
    OtherOpsets(String),
    /// It is not implemented at all.
    Unknown,
}

/// The registry of every operator the executor implements, built once. An error here (an
/// operator registered twice) is a defect of the build, reported by every load.
pub fn registry() -> Result<&'static Registry, &'static RegistryError> {
    static REGISTRY: OnceLock<Result<Registry, RegistryError>> = OnceLock::new();
    REGISTRY.get_or_init(build).as_ref()
}

/// Fills a registry with every family's operators.
fn build() -> Result<Registry, RegistryError> {
    let mut r = Registry::new();
    for register in super::FAMILIES {
        register(&mut r)?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(_: &NodeCtx<'_>) -> Result<Built, Refusal> {
        Err("never built in these tests".into())
    }

    #[test]
    fn the_executors_registry_builds_with_no_operator_twice() {
        let r = registry().expect("no operator is registered twice");
        assert!(r.iter().count() > 150, "{} definitions", r.iter().count());
        assert!(matches!(r.find("", "Gemm", 17), Lookup::Found(d) if d.fuses_relu));
        assert!(matches!(r.find("ai.onnx", "RandomNormal", 17), Lookup::Found(d) if !d.foldable));
        assert!(matches!(r.find("", "If", 17), Lookup::Found(d) if matches!(d.builder, Builder::Control)));
        assert!(matches!(r.find("com.example", "Gemm", 17), Lookup::Unknown));
        assert!(matches!(r.find("", "Det", 17), Lookup::Unknown));
    }

    #[test]
    fn registering_an_operator_twice_is_an_error() {
        let mut r = Registry::new();
        r.add(OpDef::tensor("test", "Foo", refuse)).unwrap();
        let err = r.add(OpDef::tensor("test", "Foo", refuse).since(7)).unwrap_err();
        assert_eq!(err.to_string(), "operator ai.onnx.Foo is registered twice: opsets 1+ and 7+ overlap");
        // Another domain, or opsets that do not overlap, are other definitions.
        let mut r = Registry::new();
        r.add(OpDef::tensor("test", "Foo", refuse).until(6)).unwrap();
        r.add(OpDef::tensor("test", "Foo", refuse).since(7)).unwrap();
        r.add(OpDef { domain: "com.example", ..OpDef::tensor("test", "Foo", refuse) }).unwrap();
        assert!(matches!(r.find("", "Foo", 6), Lookup::Found(d) if d.until == Some(6)));
        assert!(matches!(r.find("", "Foo", 7), Lookup::Found(d) if d.since == 7));
        let mut r = Registry::new();
        r.add(OpDef::tensor("test", "Foo", refuse).since(7).until(12)).unwrap();
        assert!(matches!(r.find("", "Foo", 13), Lookup::OtherOpsets(o) if o == "7–12"));
        let err = r.add(OpDef::tensor("test", "Foo", refuse).since(12)).unwrap_err();
        assert_eq!(
            err,
            RegistryError::Duplicate {
                domain: "", name: "Foo", first: "7–12".into(), second: "12+".into()
            }
        );
    }
}
