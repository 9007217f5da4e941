//! Reading and writing tensors as NumPy `.npy` files.

use std::io::{Read, Write};
use std::path::Path;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{element_count, Tensor};

fn npy_type(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
        DType::BF16 => return None,
    })
}

fn dtype_of(descr: &str) -> Option<DType> {
    // '=' (native) is little endian on every platform Rivet supports; '|' is byte-sized.
    let normalised: String = descr.replacen('=', "<", 1);
    DType::ALL.into_iter().filter(|d| *d != DType::BF16).find(|d| {
        let t = npy_type(*d).unwrap_or_default();
        t == normalised || (t.starts_with('|') && normalised[1..] == t[1..])
    })
}

/// Reads a C-ordered, little-endian `.npy` file into a tensor.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let header = npyz::NpyHeader::from_reader(&mut reader)
        .map_err(|e| Error::file(path, format!("not a valid .npy file: {e}")))?;
    let descr = match header.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => return Err(Error::file(path, format!("structured arrays are not supported ({other:?})"))),
    };
    let dtype = dtype_of(&descr).ok_or_else(|| {
        Error::file(
            path,
            format!(
                "unsupported .npy dtype \"{descr}\" (supported: f2 f4 f8 i1 i2 i4 i8 u1 b1, little endian)"
            ),
        )
    })?;
    if header.order() == npyz::Order::Fortran {
        return Err(Error::file(path, "Fortran-ordered arrays are not supported; save with C order"));
    }
    let shape = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| Error::file(path, "shape does not fit in memory"))?;
    let len =
        element_count(&shape)?.checked_mul(dtype.size()).ok_or_else(|| Error::file(path, "too large"))?;
    let mut bytes = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut bytes).map_err(|e| Error::file(path, e))?;
    if bytes.len() != len {
        return Err(Error::file(
            path,
            format!("truncated: {dtype}{shape:?} needs {len} data bytes, file has {}", bytes.len()),
        ));
    }
    Tensor::from_bytes(dtype, &shape, &bytes).map_err(|e| Error::file(path, e))
}

/// Writes a tensor as a `.npy` file (format 1.0, C order, little endian).
///
/// bf16 has no NumPy type; such tensors are refused with an error.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<()> {
    let descr = npy_type(tensor.dtype()).ok_or_else(|| {
        Error::file(path, "bf16 has no .npy representation; convert the tensor to f32 first")
    })?;
    let dims: Vec<String> = tensor.shape().iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| Error::file(path, "shape too long for .npy"))?;
    let write = || -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        file.write_all(b"\x93NUMPY\x01\x00")?;
        file.write_all(&header_len.to_le_bytes())?;
        file.write_all(header.as_bytes())?;
        file.write_all(tensor.as_bytes())?;
        file.flush()
    };
    write().map_err(|e| Error::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_npy_dtype_round_trips() {
        let dir = std::env::temp_dir().join(format!("rivet-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for dtype in DType::ALL {
            let path = dir.join(format!("{dtype}.npy"));
            let bytes: Vec<u8> = (0..6 * dtype.size()).map(|i| (i % 2) as u8).collect();
            let t = Tensor::from_bytes(dtype, &[2, 3], &bytes).unwrap();
            match write_npy(&path, &t) {
                Ok(()) => assert_eq!(read_npy(&path).unwrap(), t, "{dtype}"),
                Err(e) => {
                    assert_eq!(dtype, DType::BF16);
                    assert!(e.to_string().contains("bf16 has no .npy"), "{e}");
                }
            }
        }
        let scalar = Tensor::from_slice(&[], &[2.5f32]).unwrap();
        write_npy(&dir.join("s.npy"), &scalar).unwrap();
        assert_eq!(read_npy(&dir.join("s.npy")).unwrap(), scalar);

        let truncated = dir.join("t.npy");
        let full = std::fs::read(dir.join("f32.npy")).unwrap();
        std::fs::write(&truncated, &full[..full.len() - 3]).unwrap();
        let err = read_npy(&truncated).unwrap_err().to_string();
        assert!(err.contains("truncated: f32[2, 3] needs 24 data bytes, file has 21"), "{err}");
        std::fs::write(&truncated, b"hello").unwrap();
        let err = read_npy(&truncated).unwrap_err().to_string();
        assert!(err.contains("not a valid .npy file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
