// The C++ API, then a real dlpack.h: DLPack is only named by Rivet's headers.
#include <rivet.hpp>
#include <dlpack.h>

rivet::Tensor import_via_cpp(DLManagedTensorVersioned* managed) {
  managed->flags = DLPACK_FLAG_BITMASK_READ_ONLY;
  return rivet::Tensor::from_dlpack(managed);
}
