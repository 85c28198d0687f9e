# flexjit_embed_files(<target> <namespace-free output name> FILES <paths relative to the source root>)
#
# Kernel templates and the shared semantics headers are compiled by NVRTC at run time, so their text is
# embedded into libflexjit at build time. The generated source defines `flexjit::embeddedFile(path)`.
set(FLEXJIT_EMBED_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/EmbedScript.cmake")

function(flexjit_embed_files out_var)
  cmake_parse_arguments(ARG "" "" "FILES" ${ARGN})
  set(out "${PROJECT_BINARY_DIR}/generated/EmbeddedFiles.cpp")
  set(abs_files "")
  foreach(f IN LISTS ARG_FILES)
    list(APPEND abs_files "${PROJECT_SOURCE_DIR}/${f}")
  endforeach()
  string(REPLACE ";" "|" files_arg "${ARG_FILES}")
  add_custom_command(
    OUTPUT "${out}"
    COMMAND ${CMAKE_COMMAND} -DROOT=${PROJECT_SOURCE_DIR} "-DFILES=${files_arg}" -DOUT=${out} -P ${FLEXJIT_EMBED_SCRIPT}
    DEPENDS ${abs_files} ${FLEXJIT_EMBED_SCRIPT}
    COMMENT "Embedding kernel templates"
    VERBATIM)
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()
