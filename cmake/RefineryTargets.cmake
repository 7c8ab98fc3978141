# How Refinery's targets are declared. One folder is one library (or one
# program); its link line states what it depends on, and the layering check
# (cmake/check_layering.py, run on every build) fails the build when a file
# includes a header of a target, or a third-party library, that its own
# target does not link directly.
#
#   refinery_library(<name> SOURCES ... [LINK ...] [PRIVATE_LINK ...] [TORCH_PCH | SERVER_PCH] [UNITY])
#   refinery_program(<name> SOURCES ... [LINK ...] [TORCH_PCH | SERVER_PCH] [UNITY])
#
# TORCH_PCH reuses the precompiled <torch/torch.h> of refinery_runtime;
# SERVER_PCH the precompiled <torch/torch.h> + <grpcpp/grpcpp.h> of
# refinery_server_models. One PCH each for the whole tree: a PCH per target
# would cost a minute of compile each on 2 cores. Sources that need neither
# header are listed in NO_PCH and compile plainly.
#
# UNITY compiles the target's sources as one translation unit (a unity
# build): where every file spends most of its compile time in the same
# LibTorch and gRPC templates, instantiating them once per target instead of
# once per file saves minutes on 2 cores. Such files keep their file-local
# names distinct.

set_property(GLOBAL PROPERTY REFINERY_LAYERING_TARGETS "")

function(_refinery_target_common target)
  cmake_parse_arguments(A "TORCH_PCH;SERVER_PCH;UNITY" "" "SOURCES;LINK;PRIVATE_LINK;NO_PCH" ${ARGN})
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(A_UNITY)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 0)
  endif()
  if(REFINERY_USE_PCH)
    if(A_TORCH_PCH)
      target_precompile_headers(${target} REUSE_FROM refinery_runtime)
    elseif(A_SERVER_PCH)
      target_precompile_headers(${target} REUSE_FROM refinery_server_models)
    endif()
    if(A_NO_PCH)
      set_source_files_properties(${A_NO_PCH} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endif()
  # Recorded for the layering check: the target, its folder, its sources and
  # what it links directly.
  set(_srcs)
  foreach(s ${A_SOURCES} ${A_NO_PCH})
    get_filename_component(_abs "${s}" ABSOLUTE)
    list(APPEND _srcs "${_abs}")
  endforeach()
  # Headers of the folder belong to it too, except those whose own .cpp is
  # not compiled in this configuration (REFINERY_TORCH_ONLY leaves some out).
  file(GLOB _headers "${CMAKE_CURRENT_SOURCE_DIR}/*.h")
  foreach(h ${_headers})
    string(REGEX REPLACE "\\.h$" ".cpp" _cpp "${h}")
    if(EXISTS "${_cpp}" AND NOT "${_cpp}" IN_LIST _srcs)
      continue()
    endif()
    list(APPEND _srcs "${h}")
  endforeach()
  set_property(GLOBAL APPEND PROPERTY REFINERY_LAYERING_TARGETS ${target})
  set_property(GLOBAL PROPERTY REFINERY_LAYERING_${target}_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  set_property(GLOBAL PROPERTY REFINERY_LAYERING_${target}_FILES "${_srcs}")
  set_property(GLOBAL PROPERTY REFINERY_LAYERING_${target}_LINKS "${A_LINK};${A_PRIVATE_LINK}")
endfunction()

function(refinery_library target)
  cmake_parse_arguments(A "TORCH_PCH;SERVER_PCH;UNITY" "" "SOURCES;LINK;PRIVATE_LINK;NO_PCH" ${ARGN})
  add_library(${target} STATIC ${A_SOURCES} ${A_NO_PCH})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PUBLIC ${A_LINK} PRIVATE ${A_PRIVATE_LINK})
  _refinery_target_common(${target} ${ARGN})
endfunction()

function(refinery_program target)
  cmake_parse_arguments(A "TORCH_PCH;SERVER_PCH;UNITY" "" "SOURCES;LINK;PRIVATE_LINK;NO_PCH" ${ARGN})
  add_executable(${target} ${A_SOURCES} ${A_NO_PCH})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE ${A_LINK} ${A_PRIVATE_LINK})
  _refinery_target_common(${target} ${ARGN})
endfunction()

# Writes the targets' folders, files and direct links for the layering check
# and adds the check to every build. Call once, after every target exists.
function(refinery_layering_check)
  get_property(_targets GLOBAL PROPERTY REFINERY_LAYERING_TARGETS)
  set(_json "{")
  set(_sep "")
  foreach(t ${_targets})
    get_property(_dir GLOBAL PROPERTY REFINERY_LAYERING_${t}_DIR)
    get_property(_files GLOBAL PROPERTY REFINERY_LAYERING_${t}_FILES)
    get_property(_links GLOBAL PROPERTY REFINERY_LAYERING_${t}_LINKS)
    list(REMOVE_DUPLICATES _files)
    set(_f "")
    set(_s "")
    foreach(x ${_files})
      string(APPEND _f "${_s}\"${x}\"")
      set(_s ",")
    endforeach()
    set(_l "")
    set(_s "")
    foreach(x ${_links})
      if(x)
        string(APPEND _l "${_s}\"${x}\"")
        set(_s ",")
      endif()
    endforeach()
    string(APPEND _json "${_sep}\n  \"${t}\": {\"dir\": \"${_dir}\", \"files\": [${_f}], \"links\": [${_l}]}")
    set(_sep ",")
  endforeach()
  string(APPEND _json "\n}\n")
  file(WRITE "${CMAKE_BINARY_DIR}/layering.json" "${_json}")
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  set(_stamp "${CMAKE_BINARY_DIR}/layering.ok")
  set(_deps)
  foreach(t ${_targets})
    get_property(_files GLOBAL PROPERTY REFINERY_LAYERING_${t}_FILES)
    list(APPEND _deps ${_files})
  endforeach()
  set(_io)
  if(NOT REFINERY_TORCH_ONLY)
    set(_io --have-io)
  endif()
  add_custom_command(OUTPUT "${_stamp}"
    COMMAND ${Python3_EXECUTABLE} "${PROJECT_SOURCE_DIR}/cmake/check_layering.py"
      --root "${PROJECT_SOURCE_DIR}" ${_io} "${CMAKE_BINARY_DIR}/layering.json"
    COMMAND ${CMAKE_COMMAND} -E touch "${_stamp}"
    DEPENDS ${_deps} "${CMAKE_BINARY_DIR}/layering.json" "${PROJECT_SOURCE_DIR}/cmake/check_layering.py"
    COMMENT "Checking that every include is on its target's link line"
    VERBATIM)
  add_custom_target(refinery_layering_check ALL DEPENDS "${_stamp}")
  foreach(t ${_targets})
    get_target_property(_type ${t} TYPE)
    if(NOT _type STREQUAL "INTERFACE_LIBRARY")
      add_dependencies(${t} refinery_layering_check)
    endif()
  endforeach()
endfunction()

# A header-only library (test support): an INTERFACE target whose headers
# are the folder's, checked like the others.
function(refinery_header_library target)
  cmake_parse_arguments(A "" "" "LINK" ${ARGN})
  add_library(${target} INTERFACE)
  target_link_libraries(${target} INTERFACE ${A_LINK})
  file(GLOB _headers "${CMAKE_CURRENT_SOURCE_DIR}/*.h")
  set_property(GLOBAL APPEND PROPERTY REFINERY_LAYERING_TARGETS ${target})
  set_property(GLOBAL PROPERTY REFINERY_LAYERING_${target}_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  set_property(GLOBAL PROPERTY REFINERY_LAYERING_${target}_FILES "${_headers}")
  set_property(GLOBAL PROPERTY REFINERY_LAYERING_${target}_LINKS "${A_LINK}")
endfunction()

# A GoogleTest program, its tests discovered at test time (a fresh build
# does not run it).
# TEST_PROPERTIES are set on each of its tests, e.g. `PROCESSORS 2` for a
# test that keeps both cores busy for minutes: `ctest --parallel 2` then runs
# it alone instead of beside another heavy test, where both slow down more
# than twofold.
function(refinery_test target)
  cmake_parse_arguments(T "" "" "TEST_PROPERTIES" ${ARGN})
  refinery_program(${target} ${T_UNPARSED_ARGUMENTS})
  target_link_libraries(${target} PRIVATE GTest::gtest GTest::gtest_main)
  set_property(GLOBAL APPEND PROPERTY REFINERY_LAYERING_${target}_LINKS GTest::gtest)
  # Labelled with the program's name, so a lane can run the tests of the
  # programs it built: ctest -L '^refinery_base_tests$'.
  # Listing the tests of a sanitizer build that loads LibTorch can take
  # more than the default 5 s on a busy machine.
  gtest_discover_tests(${target} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 120
    PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" LABELS ${target} ${T_TEST_PROPERTIES})
endfunction()
