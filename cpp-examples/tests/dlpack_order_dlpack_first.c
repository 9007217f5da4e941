/* A real dlpack.h, then rivet.h and Rivet's fallback <rivet/dlpack.h>, which then adds nothing. */
#include <dlpack.h>
#include <rivet.h>
#include <rivet/dlpack.h>

struct rivet_error_t *export_to_real_dlpack(struct rivet_tensor_t *tensor, DLManagedTensorVersioned **out) {
  return rivet_tensor_to_dlpack(tensor, out);
}
