# Finds Refinery's dependencies: Debian packages by default, any newer
# LibTorch (CUDA builds too) through CMAKE_PREFIX_PATH.

find_package(Torch REQUIRED)
message(STATUS "LibTorch ${Torch_VERSION} from ${Torch_DIR}")
# LibTorch 2.x CUDA builds ship with the pre-C++11 ABI flag in TORCH_CXX_FLAGS.
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")

# nlohmann-json is header-only; fall back to a bare include path (e.g. a copied
# header on a machine without the package).
find_package(nlohmann_json 3.9 QUIET)
if(NOT nlohmann_json_FOUND)
  find_path(NLOHMANN_JSON_INCLUDE_DIR nlohmann/json.hpp REQUIRED)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${NLOHMANN_JSON_INCLUDE_DIR}")
endif()

find_package(CLI11 QUIET)
if(NOT CLI11_FOUND)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  set_target_properties(CLI11::CLI11 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CLI11_INCLUDE_DIR}")
endif()

find_package(Threads REQUIRED)

# BLAS threading. Debian's LibTorch calls sgemm_ through libblas.so.3, whose
# default alternative is OpenBLAS built on pthreads: a second pool of
# threads beside LibTorch's OpenMP one. The two fight for the cores (OpenMP's
# idle threads spin while OpenBLAS's run, OpenBLAS's yield-spin while
# OpenMP's run). Measured on 2 cores, batch 32 images: a small 224 px model
# 253 -> 665 images/s, ViT-B/32 15.4 -> 20.9 (refinery-model bench). The
# OpenMP build of OpenBLAS runs its GEMMs on LibTorch's own OpenMP pool.
# Every program here is linked to find it first (DT_RPATH, which unlike
# RUNPATH also applies to libtorch_cpu's and libfaiss's own libblas.so.3 and
# libopenblas.so.0), without changing the system's alternative. Where it is
# not installed the system's choice is used; the start-up log names it.
set(REFINERY_OPENBLAS_OPENMP_DIR "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp" CACHE PATH
    "Folder of the OpenMP build of OpenBLAS (libopenblas0-openmp); empty: use the system's libblas.so.3")
if(REFINERY_OPENBLAS_OPENMP_DIR AND EXISTS "${REFINERY_OPENBLAS_OPENMP_DIR}/libblas.so.3")
  add_link_options("LINKER:--disable-new-dtags" "LINKER:-rpath,${REFINERY_OPENBLAS_OPENMP_DIR}")
  message(STATUS "BLAS: OpenBLAS (OpenMP) from ${REFINERY_OPENBLAS_OPENMP_DIR}")
else()
  message(STATUS "BLAS: the system's libblas.so.3 (libopenblas0-openmp not found)")
endif()

if(NOT REFINERY_TORCH_ONLY)
  find_package(ZLIB REQUIRED)
  # utf8proc ships no CMake config on Debian.
  find_path(UTF8PROC_INCLUDE_DIR utf8proc.h REQUIRED)
  find_library(UTF8PROC_LIBRARY utf8proc REQUIRED)
  add_library(utf8proc::utf8proc UNKNOWN IMPORTED)
  set_target_properties(utf8proc::utf8proc PROPERTIES
    IMPORTED_LOCATION "${UTF8PROC_LIBRARY}" INTERFACE_INCLUDE_DIRECTORIES "${UTF8PROC_INCLUDE_DIR}")

  # OpenCV: core + imgcodecs (decoding) and imgproc (drawing the synthetic
  # world). Debian's config file comes with the full libopencv-dev; the small
  # -dev packages have none.
  find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
  if(OpenCV_FOUND)
    add_library(refinery_opencv INTERFACE)
    target_include_directories(refinery_opencv INTERFACE ${OpenCV_INCLUDE_DIRS})
    target_link_libraries(refinery_opencv INTERFACE ${OpenCV_LIBS})
  else()
    find_path(OPENCV_INCLUDE_DIR opencv2/imgcodecs.hpp PATH_SUFFIXES opencv4 REQUIRED)
    find_library(OPENCV_CORE_LIBRARY opencv_core REQUIRED)
    find_library(OPENCV_IMGCODECS_LIBRARY opencv_imgcodecs REQUIRED)
    find_library(OPENCV_IMGPROC_LIBRARY opencv_imgproc REQUIRED)
    add_library(refinery_opencv INTERFACE)
    target_include_directories(refinery_opencv INTERFACE "${OPENCV_INCLUDE_DIR}")
    target_link_libraries(refinery_opencv INTERFACE "${OPENCV_IMGCODECS_LIBRARY}" "${OPENCV_IMGPROC_LIBRARY}"
                          "${OPENCV_CORE_LIBRARY}")
  endif()

endif()

if(NOT REFINERY_TORCH_ONLY)
  # Serving: gRPC + protobuf, FAISS, cpp-httplib (/metrics and the HTTP API;
  # its pkg-config file carries the defines it was built with) and OpenSSL,
  # which serves them over TLS.
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
  find_package(OpenMP REQUIRED)  # faiss's config refers to OpenMP::OpenMP_CXX without finding it
  find_package(faiss CONFIG REQUIRED)
  find_package(OpenSSL REQUIRED)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib>=0.11)
  find_package(SQLite3 REQUIRED)

  # prometheus-cpp (metrics: the registry and the text format; its `core`
  # only, /metrics is served by our own HTTP listener). An installed one
  # first; else the unmodified upstream v1.3.0 archive in third_party/,
  # built as part of this build with no network.
  find_package(prometheus-cpp 1.3 CONFIG QUIET COMPONENTS core)
  if(NOT prometheus-cpp_FOUND)
    set(_prometheus_archive "${PROJECT_SOURCE_DIR}/third_party/prometheus-cpp-1.3.0.tar.gz")
    include(FetchContent)
    FetchContent_Declare(prometheus_cpp URL "${_prometheus_archive}"
      URL_HASH SHA256=c6e3843b570a2a8a04595d53d4dcba3d936f5f6b5303f43b23bb480378e1d12d DOWNLOAD_EXTRACT_TIMESTAMP TRUE)
    FetchContent_GetProperties(prometheus_cpp)
    if(NOT prometheus_cpp_POPULATED)
      FetchContent_Populate(prometheus_cpp)
    endif()
    set(ENABLE_PULL OFF CACHE BOOL "" FORCE)
    set(ENABLE_PUSH OFF CACHE BOOL "" FORCE)
    set(ENABLE_COMPRESSION OFF CACHE BOOL "" FORCE)
    set(ENABLE_TESTING OFF CACHE BOOL "" FORCE)
    set(USE_THIRDPARTY_LIBRARIES OFF CACHE BOOL "" FORCE)
    set(OVERRIDE_CXX_STANDARD_FLAGS OFF CACHE BOOL "" FORCE)  # keep our C++17
    set(GENERATE_PKGCONFIG OFF CACHE BOOL "" FORCE)
    # Not installed with Refinery: it is linked in statically.
    add_subdirectory("${prometheus_cpp_SOURCE_DIR}" "${prometheus_cpp_BINARY_DIR}" EXCLUDE_FROM_ALL)
    message(STATUS "prometheus-cpp: built from ${_prometheus_archive}")
  else()
    message(STATUS "prometheus-cpp: ${prometheus-cpp_DIR}")
  endif()

  # PLplot (charts): the C++ binding. Its own CMake config drags in every
  # binding's exports, so the two libraries are found directly; the cairo
  # driver (plplot-driver-cairo) is loaded at run time.
  find_path(PLPLOT_INCLUDE_DIR plplot/plstream.h REQUIRED)
  find_library(PLPLOTCXX_LIBRARY plplotcxx REQUIRED)
  find_library(PLPLOT_LIBRARY plplot REQUIRED)
  add_library(refinery_plplot INTERFACE)
  target_include_directories(refinery_plplot INTERFACE "${PLPLOT_INCLUDE_DIR}" "${PLPLOT_INCLUDE_DIR}/plplot")
  target_link_libraries(refinery_plplot INTERFACE "${PLPLOTCXX_LIBRARY}" "${PLPLOT_LIBRARY}")
endif()

if(REFINERY_BUILD_TESTS)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    # Machines without the package (the GPU machines) build GoogleTest from
    # source, with the same compiler flags (and C++ ABI) as LibTorch's.
    set(REFINERY_GTEST_SOURCE_DIR "/usr/src/googletest" CACHE PATH "GoogleTest sources, used when no package is found")
    if(NOT EXISTS "${REFINERY_GTEST_SOURCE_DIR}/CMakeLists.txt")
      message(FATAL_ERROR "GoogleTest not found: install libgtest-dev, or set REFINERY_GTEST_SOURCE_DIR, "
                          "or configure with -DREFINERY_BUILD_TESTS=OFF")
    endif()
    set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
    set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
    add_subdirectory("${REFINERY_GTEST_SOURCE_DIR}" "${CMAKE_BINARY_DIR}/_googletest" EXCLUDE_FROM_ALL)
    if(NOT TARGET GTest::gtest)  # googletest >= 1.11 defines these itself
      add_library(GTest::gtest ALIAS gtest)
      add_library(GTest::gtest_main ALIAS gtest_main)
    endif()
  endif()
endif()

# The linker. GNU ld takes about 2.5 s for each program that links LibTorch
# and gRPC, gold about 0.5 s (measured on refineryd); with a test program per
# subsystem, links are most of an incremental rebuild. auto = gold when the
# toolchain can link with it, else the compiler's default.
set(REFINERY_LINKER "auto" CACHE STRING "Linker: auto, gold, lld, bfd or default")
set(_refinery_ld "")
if(REFINERY_LINKER STREQUAL "auto")
  include(CheckLinkerFlag)
  check_linker_flag(CXX "-fuse-ld=gold" REFINERY_HAVE_GOLD)
  if(REFINERY_HAVE_GOLD)
    set(_refinery_ld gold)
  endif()
elseif(NOT REFINERY_LINKER STREQUAL "default")
  set(_refinery_ld ${REFINERY_LINKER})
endif()
if(_refinery_ld)
  add_link_options(-fuse-ld=${_refinery_ld})
  message(STATUS "Linker: ${_refinery_ld}")
endif()
