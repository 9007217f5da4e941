//! Model file formats: detection and sanity checks.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A model file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelFormat {
    /// A TorchScript archive (`torch.jit.save`), a zip file.
    TorchScript,
    /// An ONNX protobuf.
    Onnx,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::TorchScript => "TorchScript",
            ModelFormat::Onnx => "ONNX",
        })
    }
}

/// Checks that `path` is a readable, non-empty file and tells its format from its first bytes
/// (a zip archive is TorchScript) or, failing that, its extension. `backend` names who asks,
/// for the error message.
pub fn detect_format(path: &Path, backend: &str) -> Result<ModelFormat> {
    let meta = std::fs::metadata(path).map_err(|e| Error::load(backend, path, e))?;
    if !meta.is_file() {
        return Err(Error::load(backend, path, "not a regular file"));
    }
    if meta.len() == 0 {
        return Err(Error::load(backend, path, "file is empty"));
    }
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| Error::load(backend, path, e))?;
    let n = file.read(&mut head).map_err(|e| Error::load(backend, path, e))?;
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    classify(&head[..n], &ext).map_err(|reason| Error::load(backend, path, reason))
}

/// The format of a file whose first bytes are `head` (up to 4 are looked at) and whose extension
/// is `ext` (lower case, without the dot): what [`detect_format`] decides after reading them,
/// or why it cannot.
pub fn classify(head: &[u8], ext: &str) -> std::result::Result<ModelFormat, &'static str> {
    if head.starts_with(b"PK\x03\x04") {
        return Ok(ModelFormat::TorchScript);
    }
    match ext {
        "onnx" => Ok(ModelFormat::Onnx),
        "pt" | "pth" | "torchscript" => Err("not a TorchScript archive (no zip header)"),
        // ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08.
        _ if head.first() == Some(&0x08) => Ok(ModelFormat::Onnx),
        _ => Err("unknown model format (expected a TorchScript .pt archive or an .onnx file)"),
    }
}

/// Like [`detect_format`], failing with a load error that points to the right backend when
/// the file is not `expected`.
pub fn expect_format(path: &Path, backend: &str, expected: ModelFormat) -> Result<()> {
    let found = detect_format(path, backend)?;
    if found == expected {
        return Ok(());
    }
    let use_instead = match found {
        ModelFormat::TorchScript => "tch",
        ModelFormat::Onnx => "ort or candle",
    };
    Err(Error::load(backend, path, format!("{found} files are not {expected}; use {use_instead}")))
}

/// An `Unsupported` error unless `device` is the CPU, for backends this build runs on the CPU
/// only. `library` names the library in the message.
pub fn expect_cpu(device: crate::Device, backend: &str, library: &str) -> Result<()> {
    if device == crate::Device::Cpu {
        Ok(())
    } else {
        Err(Error::unsupported(
            backend,
            format!("device {device}: this build of Rivet runs {library} on the CPU only"),
        ))
    }
}

/// The sidecar spec file Rivet looks for next to a model: `dir/name.pt` → `dir/name.spec.json`.
pub fn sidecar_path(model: &Path) -> PathBuf {
    model.with_extension("spec.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_and_bad_files_named() {
        let dir = std::env::temp_dir().join(format!("rivet-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("e.onnx");
        std::fs::write(&empty, b"").unwrap();
        let err = detect_format(&empty, "ort").unwrap_err().to_string();
        assert_eq!(err, format!("ort: cannot load {}: file is empty", empty.display()));
        let junk = dir.join("j.pt");
        std::fs::write(&junk, b"not a zip").unwrap();
        let err = detect_format(&junk, "tch").unwrap_err().to_string();
        assert!(err.ends_with("not a TorchScript archive (no zip header)"), "{err}");
        let err = detect_format(&dir.join("missing.onnx"), "auto").unwrap_err().to_string();
        assert!(err.contains("missing.onnx") && err.contains("No such file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
