// A service migrating step by step includes both C++ headers in one file: the C ABI's RAII
// header and the cxx API do not collide.
#include <rivet.hpp>
#include <rivet/cxx.hpp>

int both_cpp_headers_compile() { return sizeof(rivet::TensorRef) > 0 && sizeof(rivet::LoadOptions) > 0; }
