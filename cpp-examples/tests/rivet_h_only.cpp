// rivet.h compiles on its own as C++.
#include <rivet.h>
int rivet_h_only_cpp() { return RIVET_ABI_VERSION; }
