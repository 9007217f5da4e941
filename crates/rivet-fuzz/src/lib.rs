//! Rivet's fuzz entry points: one function per path that reads untrusted input, each taking
//! the fuzzer's bytes.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` call these functions (nightly, libFuzzer),
//! and `tests/replay.rs` calls them on every committed corpus and regression file (stable, in
//! `make test`), so both exercise exactly the same code. Each function feeds the bytes to
//! Rivet's real entry point and then checks what came back: an error of the documented kind,
//! or a result consistent with the input (a tensor no larger than the data, a bound input that
//! matches its spec, a signature that reads back as written). A failed check panics, and under
//! libFuzzer a panic outside Rivet's own panic fences is a crash.
//!
//! Panics that a backend library raises inside Rivet's fences (`catch_quietly`) are turned into
//! errors there and are not crashes; a panic in Rivet's own code is.

#![warn(missing_docs)]

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use rivet_candle::CandleModel;
use rivet_core::format::classify;
use rivet_core::npy::read_npy_from;
use rivet_core::torchscript::{parse_forward, read_forward_from, tensor_count};
use rivet_core::{
    element_count, DType, ErrorKind, Inputs, Model, ModelFormat, Signature, Tensor, TensorView,
};

mod capi;
mod prep;
mod server;

pub use capi::tensor;
pub use prep::{arrow, pipeline};
pub use server::oip_request;

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every fuzz target, by name: `fuzz/fuzz_targets/NAME.rs` calls the function, and its corpus
/// lives in `fuzz/corpus/NAME/`, its crash regressions in `fuzz/regressions/NAME/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("npy", npy),
    ("spec", spec),
    ("torchscript_archive", torchscript_archive),
    ("torchscript_code", torchscript_code),
    ("bind", bind),
    ("tensor", tensor),
    ("candle_onnx", candle_onnx),
    ("pipeline", pipeline),
    ("arrow", arrow),
    ("oip_request", oip_request),
];

/// A reader that hands out at most 7 bytes a call and does not tell its size, like a pipe.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(7).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// `.npy` reading ([`rivet_core::npy::read_npy_from`]), from a buffer of known size and from a
/// reader of unknown size: the same verdict both ways, an I/O error or a tensor whose bytes are
/// the file's own.
pub fn npy(data: &[u8]) {
    let origin = Path::new("fuzz.npy");
    let sized = read_npy_from(data, Some(data.len() as u64), origin);
    let streamed = read_npy_from(Trickle(data), None, origin);
    match (&sized, &streamed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the same file read two ways");
            let len = element_count(a.shape()).expect("a tensor's shape counts") * a.dtype().size();
            assert_eq!(a.as_bytes().len(), len);
            assert!(len <= data.len(), "a {len}-byte tensor from a {}-byte file", data.len());
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.kind(), ErrorKind::Io, "{a}");
            assert_eq!(b.kind(), ErrorKind::Io, "{b}");
        }
        _ => panic!("verdicts differ: sized {sized:?}, streamed {streamed:?}"),
    }
}

/// Spec JSON ([`Signature::from_spec_json`]): an I/O error, or a signature that Rivet writes
/// back as JSON and reads again unchanged, and against which generated inputs bind.
pub fn spec(data: &[u8]) {
    let origin = Path::new("fuzz.spec.json");
    match Signature::from_spec_json(data, origin) {
        Ok(signature) => {
            let json = serde_json::to_vec(&signature).expect("a signature serialises");
            let again = Signature::from_spec_json(&json, origin).unwrap_or_else(|e| {
                panic!("Rivet's own JSON {} does not read back: {e}", String::from_utf8_lossy(&json))
            });
            assert_eq!(again, signature);
            bind_conforming(&signature);
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Io, "{e}"),
    }
}

/// Binds one input per spec, shaped as the spec says (dynamic dimensions 1), when small enough
/// to build: that binding must succeed.
fn bind_conforming(signature: &Signature) {
    let mut tensors = Vec::new();
    for spec in &signature.inputs {
        let dtype = spec.dtype.unwrap_or(DType::F32);
        let shape: Vec<usize> = spec.shape.iter().flatten().map(|d| d.fixed().unwrap_or(1)).collect();
        match element_count(&shape).ok().and_then(|n| n.checked_mul(dtype.size())) {
            Some(bytes) if bytes <= 1 << 16 => {
                tensors.push((spec.name.as_str(), Tensor::zeros(dtype, &shape).expect("small zeros")))
            }
            _ => return,
        }
    }
    let unique = {
        let mut names: Vec<&str> = tensors.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.windows(2).all(|w| w[0] != w[1])
    };
    let positional = Inputs::Positional(tensors.iter().map(|(_, t)| t.view()).collect());
    // Positional binding of conforming inputs succeeds unless named dimensions conflict
    // (`batch` fixed to 3 in one input's spec and dynamic in another's is bound to 1 here).
    if let Err(e) = signature.bind(positional) {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        return;
    }
    let named = Inputs::Named(tensors.iter().map(|(n, t)| (*n, t.view())).collect());
    let result = signature.bind(named);
    assert_eq!(result.is_ok(), unique, "named binding of conforming inputs: {result:?}");
}

/// Format detection ([`rivet_core::format::classify`]) and the TorchScript archive reader
/// ([`rivet_core::torchscript::read_forward_from`]) over arbitrary zip contents. The first
/// byte picks the file's extension, the rest is the file.
pub fn torchscript_archive(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else { return };
    let ext = ["pt", "onnx", "", "bin", "pth", "torchscript"][usize::from(pick) % 6];
    match classify(&file[..file.len().min(4)], ext) {
        Ok(ModelFormat::TorchScript) => {
            assert!(file.starts_with(b"PK\x03\x04"));
            match read_forward_from(Cursor::new(file), Path::new("fuzz.pt")) {
                Ok(forward) => check_forward(&forward),
                Err(e) => assert_eq!(e.kind(), ErrorKind::ModelLoad, "{e}"),
            }
        }
        Ok(ModelFormat::Onnx) => assert!(ext == "onnx" || file.first() == Some(&0x08)),
        Err(reason) => assert!(!reason.is_empty()),
    }
}

fn check_forward(forward: &rivet_core::torchscript::ScriptForward) {
    for arg in &forward.args {
        assert_eq!(arg.name, arg.name.trim(), "argument names are trimmed");
        assert_eq!(arg.ty, arg.ty.trim(), "argument types are trimmed");
    }
    if let Some(n) = tensor_count(&forward.returns) {
        assert!(n >= 1, "a return type of {n} tensors: {}", forward.returns);
    }
}

/// The `forward` parser over arbitrary `code/*.py` text
/// ([`rivet_core::torchscript::parse_forward`]): the first line is the class name, the rest the
/// code.
pub fn torchscript_code(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (class, code) = text.split_once('\n').unwrap_or(("", &text));
    if let Some(forward) = parse_forward(code, class) {
        check_forward(&forward);
    }
}

/// The signatures of the bundled models: their spec files and their ONNX graphs.
fn bundled_signatures() -> &'static [Signature] {
    static SIGNATURES: OnceLock<Vec<Signature>> = OnceLock::new();
    SIGNATURES.get_or_init(|| {
        let specs: [&[u8]; 3] = [
            include_bytes!("../../../models/mlp/mlp.spec.json"),
            include_bytes!("../../../models/cnn/cnn.spec.json"),
            include_bytes!("../../../models/encoder/encoder.spec.json"),
        ];
        // (encoder.onnx uses LayerNormalization, which Candle refuses; its spec stands in.)
        let onnx: [&[u8]; 4] = [
            include_bytes!("../../../models/mlp/mlp.onnx"),
            include_bytes!("../../../models/cnn/cnn.onnx"),
            include_bytes!("../../../models/identity/identity_f32.onnx"),
            include_bytes!("../../../models/identity/identity_bool.onnx"),
        ];
        let origin = Path::new("bundled");
        specs
            .iter()
            .map(|s| Signature::from_spec_json(s, origin).expect("bundled spec"))
            .chain(
                onnx.iter()
                    .map(|m| CandleModel::from_bytes(m, origin).expect("bundled model").signature().clone()),
            )
            .collect()
    })
}

/// 64 KiB of zeros, aligned for every dtype: the data of the tensors `bind` builds.
static ZEROS: [u64; 8192] = [0; 8192];

fn zero_bytes(len: usize) -> &'static [u8] {
    // SAFETY: u64s are plain bytes; the static lives forever.
    let all = unsafe { std::slice::from_raw_parts(ZEROS.as_ptr().cast::<u8>(), 8192 * 8) };
    &all[..len]
}

/// [`Signature::bind`] with arbitrary names, dtypes and shapes, by position or by name,
/// against the bundled models' signatures: an invalid-input error, or inputs in signature
/// order that match every spec's dtype, rank and fixed dimensions.
pub fn bind(data: &[u8]) {
    let _ = bind_arbitrary(&mut Unstructured::new(data));
}

fn bind_arbitrary(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let signature = u.choose(bundled_signatures())?;
    let count = u.int_in_range(0..=signature.inputs.len() + 1)?;
    let mut inputs: Vec<(String, DType, Vec<usize>)> = Vec::new();
    for _ in 0..count {
        let name = if signature.inputs.is_empty() || u.ratio(1, 8)? {
            u.arbitrary::<String>()?
        } else {
            signature.inputs[u.choose_index(signature.inputs.len())?].name.clone()
        };
        let dtype = *u.choose(&DType::ALL)?;
        let rank = u.int_in_range(0..=6usize)?;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(if u.ratio(1, 16)? { u.arbitrary::<usize>()? } else { u.int_in_range(0..=40usize)? });
        }
        inputs.push((name, dtype, shape));
    }
    let mut views = Vec::new();
    for (name, dtype, shape) in &inputs {
        let Some(len) = element_count(shape).ok().and_then(|n| n.checked_mul(dtype.size())) else { continue };
        if len > 8192 * 8 {
            continue;
        }
        let view = TensorView::new(*dtype, shape, zero_bytes(len)).expect("zeros of the right length");
        views.push((name.as_str(), view));
    }
    let given = views.len();
    let bound = if u.arbitrary::<bool>()? {
        signature.bind(Inputs::Named(views))
    } else {
        signature.bind(Inputs::Positional(views.into_iter().map(|(_, v)| v).collect()))
    };
    match bound {
        Ok(views) => {
            assert_eq!(given, signature.inputs.len());
            assert_eq!(views.len(), signature.inputs.len());
            for (spec, view) in signature.inputs.iter().zip(&views) {
                if let Some(dtype) = spec.dtype {
                    assert_eq!(view.dtype(), dtype, "input {}", spec.name);
                }
                if let Some(dims) = &spec.shape {
                    assert_eq!(view.shape().len(), dims.len(), "input {}", spec.name);
                    for (dim, &size) in dims.iter().zip(view.shape()) {
                        if let Some(fixed) = dim.fixed() {
                            assert_eq!(size, fixed, "input {}", spec.name);
                        }
                    }
                }
            }
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
    }
    Ok(())
}

/// An ONNX model loaded from arbitrary bytes and run by the Candle backend
/// ([`CandleModel::from_bytes`], then [`Model::run`] on zero inputs shaped by its signature):
/// a load or unsupported error, or a run that fails with an error or returns one tensor per
/// declared output.
pub fn candle_onnx(data: &[u8]) {
    let model = match CandleModel::from_bytes(data, Path::new("fuzz.onnx")) {
        Ok(model) => model,
        Err(e) => {
            assert!(matches!(e.kind(), ErrorKind::ModelLoad | ErrorKind::Unsupported), "{e}");
            return;
        }
    };
    let mut tensors = Vec::new();
    for spec in &model.signature().inputs {
        let dtype = spec.dtype.expect("Candle declares every input's dtype");
        let shape: Vec<usize> = spec.shape.iter().flatten().map(|d| d.fixed().unwrap_or(1)).collect();
        match element_count(&shape).ok().and_then(|n| n.checked_mul(dtype.size())) {
            Some(bytes) if bytes <= 1 << 20 => {
                tensors.push(Tensor::zeros(dtype, &shape).expect("small zeros"))
            }
            _ => return,
        }
    }
    let refs: Vec<&Tensor> = tensors.iter().collect();
    match model.run(&refs) {
        Ok(outputs) => assert_eq!(outputs.len(), model.signature().outputs.len()),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::Backend | ErrorKind::Unsupported | ErrorKind::InvalidInput),
            "{e}"
        ),
    }
}
