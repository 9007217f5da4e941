# CMake package for Rivet, installed by `make install PREFIX=...`.
# Gives the imported targets Rivet::rivet (librivet.so with include/rivet.h and rivet.hpp, the C
# ABI), Rivet::cxx (the same library through the C++ API: include <rivet/cxx.hpp>, C++17) and
# Rivet::rivet_static (librivet.a, both APIs, linked with the C++ linker).
get_filename_component(_rivet_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET Rivet::rivet)
  add_library(Rivet::rivet SHARED IMPORTED)
  set_target_properties(Rivet::rivet PROPERTIES
    IMPORTED_LOCATION "${_rivet_prefix}/lib/librivet.so.0"
    IMPORTED_SONAME "librivet.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${_rivet_prefix}/include")
endif()
if(NOT TARGET Rivet::rivet_static)
  # librivet.a: the same C ABI and C++ API linked into the program. The tch backend library is
  # then found through RIVET_BACKEND_PATH or RIVET_TCH_LIBRARY (or beside the program).
  add_library(Rivet::rivet_static STATIC IMPORTED)
  set_target_properties(Rivet::rivet_static PROPERTIES
    IMPORTED_LOCATION "${_rivet_prefix}/lib/librivet.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "CXX"
    INTERFACE_INCLUDE_DIRECTORIES "${_rivet_prefix}/include"
    INTERFACE_LINK_LIBRARIES "dl;pthread;m")
endif()
if(NOT TARGET Rivet::cxx)
  add_library(Rivet::cxx INTERFACE IMPORTED)
  set_target_properties(Rivet::cxx PROPERTIES
    INTERFACE_LINK_LIBRARIES Rivet::rivet
    INTERFACE_COMPILE_FEATURES cxx_std_17)
endif()
set(Rivet_INCLUDE_DIRS "${_rivet_prefix}/include")
set(Rivet_LIBRARIES Rivet::rivet)
unset(_rivet_prefix)
