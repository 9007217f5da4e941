//! Conversions between the bridge's types and Rivet's, used both ways: by the API C++ calls
//! and by the scorers C++ implements.

use crate::ffi::{self, TensorSpec};

/// Rivet's dtype for a bridge dtype.
pub(crate) fn to_dtype(dtype: ffi::DType) -> Option<rivet::DType> {
    rivet::DType::ALL.into_iter().find(|d| *d as u32 == dtype.repr)
}

/// The bridge's dtype for Rivet's.
pub(crate) fn from_dtype(dtype: rivet::DType) -> ffi::DType {
    ffi::DType { repr: dtype as u32 }
}

/// A spec as C++ sees it.
pub(crate) fn to_spec(spec: &rivet::TensorSpec) -> TensorSpec {
    TensorSpec {
        name: spec.name.clone(),
        dtype: spec.dtype.map_or(ffi::DType::Unknown, from_dtype),
        shape: spec.shape.iter().flatten().map(|d| d.as_i64()).collect(),
    }
}
