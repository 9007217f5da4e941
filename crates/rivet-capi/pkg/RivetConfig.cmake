# CMake package for Rivet, installed by `make install PREFIX=...`.
# Gives the imported target Rivet::rivet (librivet.so with include/rivet.h and rivet.hpp).
get_filename_component(_rivet_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET Rivet::rivet)
  add_library(Rivet::rivet SHARED IMPORTED)
  set_target_properties(Rivet::rivet PROPERTIES
    IMPORTED_LOCATION "${_rivet_prefix}/lib/librivet.so.0"
    IMPORTED_SONAME "librivet.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${_rivet_prefix}/include")
endif()
set(Rivet_INCLUDE_DIRS "${_rivet_prefix}/include")
set(Rivet_LIBRARIES Rivet::rivet)
unset(_rivet_prefix)
