// <rivet/cxx.hpp> compiles on its own.
#include <rivet/cxx.hpp>
