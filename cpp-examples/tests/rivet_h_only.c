/* rivet.h compiles on its own as C. */
#include <rivet.h>
int rivet_h_only_c(void) { return RIVET_ABI_VERSION; }
