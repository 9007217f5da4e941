/* rivet.h, then a real dlpack.h: both compile together, and DLPack's own types fit Rivet's
 * calls. (Before rivet.h only named DLPack, this order failed with redefinitions.) */
#include <rivet.h>
#include <dlpack.h>

struct rivet_error_t *import_real_dlpack(DLManagedTensorVersioned *managed, struct rivet_tensor_t **out) {
  managed->dl_tensor.device.device_type = kDLCPU;
  return rivet_tensor_from_dlpack(managed, out);
}
