//! Reading and writing tensors as NumPy `.npy` files.

use std::io::{Read, Write};
use std::path::Path;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{element_count, Tensor};

/// NumPy's type string for `dtype` (`<f4`, `|b1`...), as `.npy` headers and the array interface
/// write it; `None` for bf16, which NumPy lacks.
pub fn npy_type(dtype: DType) -> Option<&'static str> {
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
    // A byte-order character, then the type code: '=' (native) is little endian on every
    // platform Rivet supports; '|' (not applicable) and any order fit the one-byte types.
    let (order, code) = descr.split_at_checked(1)?;
    if !matches!(order, "<" | ">" | "=" | "|") {
        return None;
    }
    DType::ALL.into_iter().filter(|d| *d != DType::BF16).find(|d| {
        let (t_order, t_code) = npy_type(*d).unwrap_or_default().split_at(1);
        t_code == code && (t_order == order || t_order == "|" || (t_order == "<" && order == "="))
    })
}

/// The largest `.npy` header Rivet reads. NumPy writes headers of 64 to a few hundred bytes and
/// refuses to read ones over 10,000 by default; a header length field is untrusted, so nothing
/// is allocated for it before it is checked against this limit.
pub const MAX_NPY_HEADER: usize = 1 << 16;

/// Reads a C-ordered, little-endian `.npy` file into a tensor.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let size = file.metadata().map(|m| m.len()).ok();
    read_npy_from(std::io::BufReader::new(file), size, path)
}

/// Reads a `.npy` image from `reader` (a file, a buffer: `&[u8]` is a reader), with the same
/// checks as [`read_npy`]. `size`, when known, is how many bytes the reader holds: a header or
/// shape asking for more is refused before anything is allocated for it. `origin` names the
/// data in errors, which are [`Error::File`].
///
/// Memory: at most what the data really holds is allocated, whatever the header claims (a
/// shape of 2^40 elements over a short reader is an error, not an attempted allocation).
pub fn read_npy_from(mut reader: impl Read, size: Option<u64>, origin: &Path) -> Result<Tensor> {
    let fail = |message: String| Error::file(origin, message);
    let invalid = |why: &dyn std::fmt::Display| fail(format!("not a valid .npy file: {why}"));
    // Magic (6), version (2), header length: 2 bytes in version 1, 4 in versions 2 and 3.
    let mut preamble = Vec::with_capacity(12);
    (&mut reader).take(10).read_to_end(&mut preamble).map_err(|e| fail(e.to_string()))?;
    if preamble.len() < 10 || !preamble.starts_with(b"\x93NUMPY") {
        return Err(invalid(&"no \\x93NUMPY preamble"));
    }
    let header_len = match preamble[6] {
        1 => usize::from(u16::from_le_bytes([preamble[8], preamble[9]])),
        2 | 3 => {
            (&mut reader).take(2).read_to_end(&mut preamble).map_err(|e| fail(e.to_string()))?;
            if preamble.len() < 12 {
                return Err(invalid(&"truncated in its preamble"));
            }
            let len = u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]);
            usize::try_from(len).unwrap_or(usize::MAX)
        }
        v => return Err(invalid(&format!("format version {v} (Rivet reads 1, 2 and 3)"))),
    };
    let prefix = preamble.len();
    if header_len > MAX_NPY_HEADER {
        return Err(invalid(&format!(
            "header of {header_len} bytes is over Rivet's limit of {MAX_NPY_HEADER}"
        )));
    }
    if size.is_some_and(|size| (prefix + header_len) as u64 > size) {
        return Err(invalid(&format!("header of {header_len} bytes is longer than the file")));
    }
    let mut head = preamble;
    head.reserve_exact(header_len);
    (&mut reader).take(header_len as u64).read_to_end(&mut head).map_err(|e| fail(e.to_string()))?;
    if head.len() != prefix + header_len {
        return Err(invalid(&format!("header of {header_len} bytes is longer than the file")));
    }
    let text = std::str::from_utf8(&head[prefix..]).map_err(|_| invalid(&"header is not text"))?;
    let header = Header::parse(text).map_err(|why| invalid(&format!("header {}: {why}", text.trim_end())))?;
    let descr = header.descr;
    let dtype = dtype_of(&descr).ok_or_else(|| {
        fail(format!(
            "unsupported .npy dtype \"{descr}\" (supported: f2 f4 f8 i1 i2 i4 i8 u1 b1, little endian)"
        ))
    })?;
    if header.fortran_order {
        return Err(fail("Fortran-ordered arrays are not supported; save with C order".into()));
    }
    let shape = header
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| fail("shape does not fit in memory".into()))?;
    let len = element_count(&shape)
        .ok()
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| fail(format!("{dtype}{shape:?} is larger than fits in memory")))?;
    let truncated =
        |found: u64| fail(format!("truncated: {dtype}{shape:?} needs {len} data bytes, file has {found}"));
    let present = size.map(|size| size - head.len() as u64);
    if let Some(present) = present.filter(|&p| p < len as u64) {
        return Err(truncated(present));
    }
    // Known size: exactly what is there. Unknown: grown as data arrives, never from the header.
    let mut bytes = Vec::with_capacity(if present.is_some() { len } else { len.min(1 << 20) });
    reader.take(len as u64).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
    if bytes.len() != len {
        return Err(truncated(bytes.len() as u64));
    }
    Tensor::from_bytes(dtype, &shape, &bytes).map_err(|e| fail(e.to_string()))
}

/// What a `.npy` header says: a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// Why a `.npy` header's text does not parse: what was expected or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BadHeader(String);

impl std::fmt::Display for BadHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for BadHeader {
    fn from(what: &str) -> BadHeader {
        BadHeader(what.to_owned())
    }
}

/// A cursor over header text, for the small part of Python's literal syntax headers use.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// Consumes `c` (after spaces) when it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), BadHeader> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(BadHeader(format!(
                "expected '{c}' at \"{}\"",
                self.rest.chars().take(20).collect::<String>()
            )))
        }
    }

    /// A quoted string without escapes (what NumPy writes for keys and dtypes).
    fn string(&mut self) -> std::result::Result<&'a str, BadHeader> {
        self.skip_space();
        let quote =
            self.rest.chars().next().filter(|q| *q == '\'' || *q == '"').ok_or("expected a string")?;
        let body = &self.rest[1..];
        let end = body.find(quote).ok_or("unterminated string")?;
        if body[..end].contains('\\') {
            return Err("escapes in strings are not supported".into());
        }
        self.rest = &body[end + 1..];
        Ok(&body[..end])
    }

    fn boolean(&mut self) -> std::result::Result<bool, BadHeader> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(value);
            }
        }
        Err("fortran_order must be True or False".into())
    }

    /// A tuple of non-negative integers (`()`, `(3,)`, `(2, 3)`; Python 2's `3L` too).
    fn shape(&mut self) -> std::result::Result<Vec<u64>, BadHeader> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                return Ok(dims);
            }
            self.skip_space();
            let digits = self.rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err("shape entries must be non-negative integers".into());
            }
            let dim = self.rest[..digits].parse::<u64>().map_err(|_| "a shape entry is too large")?;
            dims.push(dim);
            self.rest = &self.rest[digits..];
            self.rest = self.rest.strip_prefix('L').unwrap_or(self.rest);
            if dims.len() > 64 {
                return Err("rank is over Rivet's limit of 64".into());
            }
            if !self.eat(',') {
                self.expect(')')?;
                return Ok(dims);
            }
        }
    }
}

impl Header {
    fn parse(text: &str) -> std::result::Result<Header, BadHeader> {
        let mut cursor = Cursor { rest: text };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        cursor.expect('{')?;
        while !cursor.eat('}') {
            let key = cursor.string()?;
            cursor.expect(':')?;
            match key {
                "descr" if cursor.eat('[') => return Err("structured arrays are not supported".into()),
                "descr" => descr = Some(cursor.string()?.to_owned()),
                "fortran_order" => fortran_order = Some(cursor.boolean()?),
                "shape" => shape = Some(cursor.shape()?),
                other => return Err(BadHeader(format!("unknown key \"{other}\""))),
            }
            if !cursor.eat(',') {
                cursor.expect('}')?;
                break;
            }
        }
        if !cursor.rest.trim().is_empty() {
            return Err("text after the closing brace".into());
        }
        Ok(Header {
            descr: descr.ok_or("no 'descr'")?,
            fortran_order: fortran_order.ok_or("no 'fortran_order'")?,
            shape: shape.ok_or("no 'shape'")?,
        })
    }
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

    /// A `.npy` image: version 1 or 2 preamble, `header` padded to 16 bytes, then `data`.
    fn image(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut header = header.to_owned();
        while !(header.len() + 1).is_multiple_of(16) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn untrusted_lengths_are_checked_before_anything_is_allocated() {
        let origin = Path::new("t.npy");
        let read = |bytes: &[u8]| read_npy_from(bytes, Some(bytes.len() as u64), origin);
        let ok =
            image(2, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(read(&ok).unwrap().as_slice::<i32>().unwrap(), &[1, 2]);

        // A shape of 2^40 elements over 8 bytes of data: refused, nothing allocated for it.
        let huge =
            image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576), }", &[0; 8]);
        let err = read(&huge).unwrap_err().to_string();
        assert!(
            err.contains("truncated: f32[1048576, 1048576] needs 4398046511104 data bytes, file has 8"),
            "{err}"
        );
        // The same through a reader that does not tell its size: refused once the data runs out.
        let err = read_npy_from(&huge[..], None, origin).unwrap_err().to_string();
        assert!(err.contains("file has 8"), "{err}");
        // More elements than fit in memory at all.
        let overflow =
            image(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", &[]);
        let err = read(&overflow).unwrap_err().to_string();
        assert!(err.contains("is larger than fits in memory"), "{err}");

        // A version 2 header claiming 4 GiB: refused by its length field alone.
        let mut claim = b"\x93NUMPY\x02\x00".to_vec();
        claim.extend(u32::MAX.to_le_bytes());
        let err = read_npy_from(&claim[..], None, origin).unwrap_err().to_string();
        assert!(err.contains("header of 4294967295 bytes is over Rivet's limit of 65536"), "{err}");
        let mut claim = b"\x93NUMPY\x01\x00".to_vec();
        claim.extend(60000u16.to_le_bytes());
        let err = read(&claim).unwrap_err().to_string();
        assert!(err.contains("header of 60000 bytes is longer than the file"), "{err}");
        // Found by fuzzing (fuzz/regressions/npy/non_ascii_descr): a descr starting with a
        // two-byte character was sliced inside it, a panic.
        let odd = image(1, "{'descr': '\u{120}8', 'fortran_order': False, 'shape': (2,), }", &[0; 8]);
        let err = read(&odd).unwrap_err().to_string();
        assert!(err.contains("unsupported .npy dtype \"\u{120}8\""), "{err}");
        let err = read(b"\x93NUMPY\x07\x00\x10\x00").unwrap_err().to_string();
        assert!(err.contains("format version 7 (Rivet reads 1, 2 and 3)"), "{err}");
    }
}
