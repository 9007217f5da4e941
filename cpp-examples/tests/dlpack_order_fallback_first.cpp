// Rivet's fallback <rivet/dlpack.h>, then a real dlpack.h (skipped by its own include guard),
// then the C++ API: one set of DLPack types throughout.
#include <rivet/dlpack.h>
#include <dlpack.h>
#include <rivet.hpp>

DLManagedTensorVersioned* export_via_cpp(rivet::Tensor tensor) {
  static_assert(sizeof(DLDevice) == 8, "DLPack's DLDevice layout");
  return std::move(tensor).to_dlpack();
}
