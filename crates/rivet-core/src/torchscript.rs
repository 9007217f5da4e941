//! What a TorchScript archive declares about `forward`: argument names and annotated types,
//! read from the archive's Python code (libtorch does not report them), and the signature that
//! results together with the spec file (feature `torchscript`). Pure Rust (the zip reader
//! only): the tch backend uses it, and so can anything that inspects an archive without
//! loading libtorch.
//!
//! Archives are untrusted input: only `data.pkl`'s first 512 bytes and one code file of at most
//! [`MAX_CODE_BYTES`] are decompressed, whatever sizes the archive claims.

use std::io::{Read, Seek};
use std::path::Path;

use crate::format::sidecar_path;
use crate::{Error, Result, Signature, TensorSpec};

/// The largest `code/*.py` file Rivet reads from an archive (a module's code is kilobytes; a
/// larger one is refused rather than decompressed without bound).
pub const MAX_CODE_BYTES: u64 = 16 << 20;

/// A `forward` argument or return type as written in the archive's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptArg {
    /// Argument name.
    pub name: String,
    /// TorchScript type, e.g. `Tensor` or `Optional[Tensor]`.
    pub ty: String,
}

/// What a TorchScript archive declares about `forward`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptForward {
    /// Arguments after `self`.
    pub args: Vec<ScriptArg>,
    /// The return type, e.g. `Tensor` or `Tuple[Tensor, Tensor]`.
    pub returns: String,
}

/// Reads `forward`'s argument names and annotated types from a TorchScript archive's code.
pub fn read_torchscript_forward(path: &Path) -> Result<ScriptForward> {
    let file = std::fs::File::open(path).map_err(|e| Error::load("tch", path, e))?;
    read_forward_from(std::io::BufReader::new(file), path)
}

/// [`read_torchscript_forward`] over an archive held by `reader` (a file, or a
/// `std::io::Cursor` over bytes); `origin` names it in errors, which are [`Error::Load`].
pub fn read_forward_from(reader: impl Read + Seek, origin: &Path) -> Result<ScriptForward> {
    let fail = |reason: String| Error::load("tch", origin, reason);
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| fail(format!("not a valid TorchScript archive: {e}")))?;
    let data_pkl = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_owned))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| fail("not a TorchScript archive: no data.pkl".into()))?;
    let prefix = data_pkl.trim_end_matches("data.pkl").to_owned();
    let mut head = Vec::new();
    zip.by_name(&data_pkl)
        .map_err(|e| fail(format!("cannot read {data_pkl}: {e}")))?
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| fail(format!("cannot read {data_pkl}: {e}")))?;
    let (module, class) =
        root_class(&head).ok_or_else(|| fail("cannot find the root module's class in data.pkl".into()))?;
    let code_path = format!("{prefix}code/{}.py", module.replace('.', "/"));
    let mut code = Vec::new();
    zip.by_name(&code_path)
        .map_err(|e| fail(format!("cannot read {code_path}: {e}")))?
        .take(MAX_CODE_BYTES + 1)
        .read_to_end(&mut code)
        .map_err(|e| fail(format!("cannot read {code_path}: {e}")))?;
    if code.len() as u64 > MAX_CODE_BYTES {
        return Err(fail(format!("{code_path} is over Rivet's limit of {MAX_CODE_BYTES} bytes")));
    }
    let code = String::from_utf8(code).map_err(|_| fail(format!("cannot read {code_path}: not UTF-8")))?;
    parse_forward(&code, &class)
        .ok_or_else(|| fail(format!("cannot find `def forward` of class {class} in {code_path}")))
}

/// The pickle starts `\x80\x02 c<module>\n<class>\n`: the root object's class.
fn root_class(pickle: &[u8]) -> Option<(String, String)> {
    let rest = pickle.strip_prefix(b"\x80\x02c")?;
    let text = std::str::from_utf8(&rest[..rest.len().min(400)]).ok().or_else(|| {
        let end = rest.iter().take(400).position(|&b| b >= 0x80)?;
        std::str::from_utf8(&rest[..end]).ok()
    })?;
    let mut lines = text.splitn(3, '\n');
    let module = lines.next()?.to_owned();
    let class = lines.next()?.to_owned();
    Some((module, class))
}

/// `forward` of class `class` in TorchScript code (a `code/*.py` file of an archive), or `None`
/// when the code holds no such class or method.
pub fn parse_forward(code: &str, class: &str) -> Option<ScriptForward> {
    let class_start = code.find(&format!("class {class}("))?;
    let body = &code[class_start..];
    let body = &body[..body[1..].find("\nclass ").map_or(body.len(), |i| i + 1)];
    let def = body.find("def forward(")? + "def forward(".len();
    let text = &body[def..];
    let mut depth = 0usize;
    let mut close = None;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ')' if depth == 0 => {
                close = Some(i);
                break;
            }
            ')' => depth -= 1,
            _ => {}
        }
    }
    let close = close?;
    let params = split_top_level(&text[..close]);
    let after = &text[close + 1..];
    let returns = after.trim_start().strip_prefix("->").and_then(|r| r.split(":\n").next());
    let returns = returns.map_or_else(|| "Any".to_owned(), |r| r.trim().to_owned());
    let mut args = Vec::new();
    for param in params.into_iter().skip(1) {
        let param = param.split('=').next().unwrap_or("").trim();
        let (name, ty) = param.split_once(':').unwrap_or((param, "Any"));
        args.push(ScriptArg { name: name.trim().to_owned(), ty: ty.trim().to_owned() });
    }
    Some(ScriptForward { args, returns })
}

fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts.into_iter().map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// Number of tensors a TorchScript return type holds: `Tensor` → 1, `Tuple[Tensor, Tensor]`
/// → 2; `None` for anything else.
pub fn tensor_count(returns: &str) -> Option<usize> {
    if returns == "Tensor" {
        return Some(1);
    }
    let inner = returns.strip_prefix("Tuple[")?.strip_suffix(']')?;
    let parts = split_top_level(inner);
    parts.iter().all(|p| p.trim() == "Tensor").then_some(parts.len())
}

/// The signature of a TorchScript model: argument names from the archive, dtypes and shapes
/// from the spec file (`spec`, or the sidecar next to the model when it exists).
///
/// Without a spec file, inputs have unknown dtype and shape and outputs are `output_N`.
pub fn torchscript_signature(path: &Path, spec: Option<&Path>) -> Result<Signature> {
    let forward = read_torchscript_forward(path)?;
    for arg in &forward.args {
        if arg.ty != "Tensor" {
            return Err(Error::unsupported(
                "tch",
                format!(
                    "forward argument \"{}: {}\" in {}: Rivet passes tensors only",
                    arg.name,
                    arg.ty,
                    path.display()
                ),
            ));
        }
    }
    let arg_names: Vec<&str> = forward.args.iter().map(|a| a.name.as_str()).collect();
    let sidecar = sidecar_path(path);
    let spec_path = match spec {
        Some(p) => Some(p.to_path_buf()),
        None => sidecar.is_file().then_some(sidecar),
    };
    let Some(spec_path) = spec_path else {
        let outputs = tensor_count(&forward.returns)
            .map(|n| (0..n).map(|i| TensorSpec::unknown(format!("output_{i}"))).collect())
            .unwrap_or_default();
        let inputs = arg_names.iter().map(|n| TensorSpec::unknown(*n)).collect();
        return Ok(Signature { inputs, outputs });
    };
    let signature = Signature::from_spec_file(&spec_path)?;
    let spec_names: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
    if spec_names != arg_names {
        // The spec was read; the model cannot be loaded with it: a load error, naming both.
        return Err(Error::load(
            "tch",
            path,
            format!(
                "spec {} lists inputs [{}] but forward takes [{}]",
                spec_path.display(),
                spec_names.join(", "),
                arg_names.join(", ")
            ),
        ));
    }
    if let Some(n) = tensor_count(&forward.returns) {
        if !signature.outputs.is_empty() && signature.outputs.len() != n {
            return Err(Error::load(
                "tch",
                path,
                format!(
                    "spec {} lists {} output(s) but forward returns {} ({})",
                    spec_path.display(),
                    signature.outputs.len(),
                    n,
                    forward.returns
                ),
            ));
        }
    }
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of `files`, deflated, as `torch.jit.save` lays them out.
    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn archives_in_memory_are_read_and_bad_ones_refused_by_message() {
        let code: &[u8] = b"class Net(Module):\n  def forward(self: __torch__.Net,\n    x: Tensor) -> Tensor:\n    return x\n";
        let pickle: &[u8] = b"\x80\x02c__torch__\nNet\nq\x00.";
        let origin = Path::new("net.pt");
        let good = archive(&[("net/data.pkl", pickle), ("net/code/__torch__.py", code)]);
        let forward = read_forward_from(std::io::Cursor::new(&good), origin).unwrap();
        assert_eq!(forward.args, vec![ScriptArg { name: "x".into(), ty: "Tensor".into() }]);
        assert_eq!(forward.returns, "Tensor");

        let err =
            |bytes: Vec<u8>| read_forward_from(std::io::Cursor::new(bytes), origin).unwrap_err().to_string();
        assert!(err(b"PK\x03\x04 not really".to_vec()).contains("not a valid TorchScript archive"));
        let no_code = archive(&[("net/data.pkl", pickle)]);
        assert!(
            err(no_code).ends_with("cannot read net/code/__torch__.py: specified file not found in archive")
        );
        let not_utf8 = archive(&[("net/data.pkl", pickle), ("net/code/__torch__.py", b"\xff\xfe")]);
        assert!(err(not_utf8).ends_with("cannot read net/code/__torch__.py: not UTF-8"));
        // A code file over the limit is refused after MAX_CODE_BYTES + 1 bytes, however large.
        let huge = vec![b' '; MAX_CODE_BYTES as usize + 10];
        let bomb = archive(&[("net/data.pkl", pickle), ("net/code/__torch__.py", &huge)]);
        assert!(bomb.len() < 100_000, "deflate makes {} bytes of spaces small", huge.len());
        assert!(err(bomb).ends_with("net/code/__torch__.py is over Rivet's limit of 16777216 bytes"));
    }

    #[test]
    fn forward_is_parsed_from_script_code() {
        let code = "class Other(Module):\n  def forward(self, a: int) -> int:\n    return a\n\
                    class M(Module):\n  __parameters__ = []\n  def forward(self: __torch__.M,\n    \
                    input_ids: Tensor,\n    mask: Optional[Tensor]=None) -> Tuple[Tensor, Tensor]:\n    \
                    return (input_ids, input_ids)\n";
        let f = parse_forward(code, "M").unwrap();
        assert_eq!(
            f.args,
            vec![
                ScriptArg { name: "input_ids".into(), ty: "Tensor".into() },
                ScriptArg { name: "mask".into(), ty: "Optional[Tensor]".into() },
            ]
        );
        assert_eq!(f.returns, "Tuple[Tensor, Tensor]");
        assert_eq!(tensor_count(&f.returns), Some(2));
        assert_eq!(tensor_count("List[Tensor]"), None);
        assert_eq!(
            root_class(b"\x80\x02c__torch__.a\nNet\nq\x00"),
            Some(("__torch__.a".into(), "Net".into()))
        );
    }
}
