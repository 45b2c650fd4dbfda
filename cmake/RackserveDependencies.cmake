# Third-party dependencies. Every one is a Debian bookworm package that deploy/install-deps
# installs; CUDA is optional and found in /usr/local/cuda.
find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(GTest CONFIG REQUIRED)
find_package(ucx CONFIG REQUIRED)  # ucx::ucp ucx::ucs (host-memory communicator)
find_package(Protobuf REQUIRED)    # protobuf::libprotobuf, protobuf::protoc
find_package(gRPC CONFIG REQUIRED)  # gRPC::grpc++, gRPC::grpc_cpp_plugin
find_package(yaml-cpp CONFIG REQUIRED)  # yaml-cpp (topology files)

find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_library(SENTENCEPIECE_TRAIN_LIBRARY NAMES sentencepiece_train REQUIRED)
add_library(rackserve_sentencepiece INTERFACE)
target_link_libraries(rackserve_sentencepiece INTERFACE PkgConfig::SENTENCEPIECE
                                                        ${SENTENCEPIECE_TRAIN_LIBRARY})
# Debian's libsentencepiece bundles protobuf-lite 3.14 with exported symbols. In a program that
# also loads libprotobuf (every gRPC program), whichever loads first wins: sentencepiece first
# crashes protobuf's static initializers before main(). gRPC programs link this first in their
# DEPS so libprotobuf loads first. Only TrainTokenizer still calls libsentencepiece; the
# Tokenizer reads tokenizer.model with its own code, so gRPC programs load tokenizers safely.
set(RACKSERVE_PROTOBUF_FIRST "-Wl,--no-as-needed" protobuf::libprotobuf "-Wl,--as-needed")

set(RACKSERVE_HAVE_CUDA OFF)
if(RACKSERVE_ENABLE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    # CMake 3.25 cannot compile .cu as C++20 by itself (TOOLCHAIN.md).
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      add_library(rackserve_nccl INTERFACE IMPORTED)
      target_include_directories(rackserve_nccl INTERFACE ${NCCL_INCLUDE_DIR})
      target_link_libraries(rackserve_nccl INTERFACE ${NCCL_LIBRARY})
      message(STATUS "rackserve: NCCL found: ${NCCL_LIBRARY}")
    else()
      message(STATUS "rackserve: NCCL not found in the CUDA install")
    endif()
    set(RACKSERVE_HAVE_CUDA ON)
    message(STATUS "rackserve: CUDA backend ON (${CMAKE_CUDA_COMPILER}), sm_90a + sm_100a")
  else()
    message(STATUS "rackserve: no nvcc found, CUDA backend OFF")
  endif()
else()
  message(STATUS "rackserve: CUDA backend disabled (RACKSERVE_ENABLE_CUDA=OFF)")
endif()
