# Link MLIR statically.
#
# Debian's MLIR 19 ships static libMLIR*.a archives, but their exported CMake targets list the shared
# `LLVM` library in INTERFACE_LINK_LIBRARIES. Linking them as-is pulls libLLVM-19.so in at run time (and
# duplicates LLVM's global option registry). We rewrite every imported MLIR target to depend on the static
# LLVM component archives instead, so flexjit binaries carry no libMLIR/libLLVM dependency.
#
# Deliberately NOT included: LLVM's HandleLLVMOptions (it adds -fno-exceptions / -fno-rtti globally, and
# flexjit reports user errors with exceptions).

set(FLEXJIT_LLVM_STATIC_COMPONENTS LLVMSupport LLVMDemangle)

function(flexjit_make_mlir_static)
  get_property(all_mlir GLOBAL PROPERTY MLIR_ALL_LIBS)
  foreach(tgt IN LISTS all_mlir)
    if(NOT TARGET ${tgt})
      continue()
    endif()
    get_target_property(kind ${tgt} TYPE)
    if(NOT kind STREQUAL "STATIC_LIBRARY")
      continue()
    endif()
    get_target_property(deps ${tgt} INTERFACE_LINK_LIBRARIES)
    if(NOT deps)
      continue()
    endif()
    list(TRANSFORM deps REPLACE "^LLVM$" "${FLEXJIT_LLVM_STATIC_COMPONENTS}")
    set_target_properties(${tgt} PROPERTIES INTERFACE_LINK_LIBRARIES "${deps}")
  endforeach()
  # LLVMSupport names libz3 and the shared zlib/zstd; with --as-needed only what is really referenced stays.
endfunction()
