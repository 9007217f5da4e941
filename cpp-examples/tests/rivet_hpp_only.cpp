// rivet.hpp compiles on its own.
#include <rivet.hpp>
int rivet_hpp_only() { return static_cast<int>(rivet::dtype_of<float>::value); }
