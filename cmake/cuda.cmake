# Decides whether the CUDA backend is built and, when it is, enables the CUDA language.
#   HELM_WITH_CUDA=AUTO  build it where nvcc is found (on PATH, $CUDA_HOME/bin or /usr/local/cuda/bin)
#   HELM_WITH_CUDA=ON    build it, and fail clearly when nvcc is missing
#   HELM_WITH_CUDA=OFF   never build it
# Sets HELM_CUDA_ENABLED (ON/OFF); defines HELM_WITH_CUDA=1 on targets linking helm::cuda_flags.
set(HELM_CUDA_ENABLED OFF)
if(NOT HELM_WITH_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "HELM_WITH_CUDA must be AUTO, ON or OFF, got '${HELM_WITH_CUDA}'")
endif()
if(NOT HELM_WITH_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(HELM_NVCC nvcc HINTS ENV CUDA_HOME PATH_SUFFIXES bin
                 PATHS /usr/local/cuda/bin /usr/local/cuda)
    if(HELM_NVCC)
      set(CMAKE_CUDA_COMPILER ${HELM_NVCC})
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    # Never 'native': on a machine without a GPU it silently builds for an old architecture.
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no CUDA20 flag for nvcc
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    if(HELM_CCACHE)
      set(CMAKE_CUDA_COMPILER_LAUNCHER ${HELM_CCACHE})
    endif()
    get_filename_component(HELM_CUDA_ROOT "${CUDAToolkit_BIN_DIR}" DIRECTORY)
    find_path(HELM_NCCL_INCLUDE nccl.h HINTS ${HELM_CUDA_ROOT}/include ${CUDAToolkit_INCLUDE_DIRS})
    find_library(HELM_NCCL_LIBRARY nccl HINTS ${HELM_CUDA_ROOT}/lib64 ${CUDAToolkit_LIBRARY_DIR})
    set(HELM_CUDA_ENABLED ON)
    message(STATUS "HELM: CUDA ${CUDAToolkit_VERSION} at ${HELM_CUDA_ROOT}, "
                   "architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${HELM_NCCL_LIBRARY}")
  elseif(HELM_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "HELM_WITH_CUDA=ON but nvcc was not found on PATH, under $CUDA_HOME/bin "
                        "or /usr/local/cuda/bin; install the CUDA Toolkit or set CMAKE_CUDA_COMPILER")
  endif()
endif()

add_library(helm_cuda_flags INTERFACE)
add_library(helm::cuda_flags ALIAS helm_cuda_flags)
if(HELM_CUDA_ENABLED)
  target_compile_definitions(helm_cuda_flags INTERFACE HELM_WITH_CUDA=1)
else()
  target_compile_definitions(helm_cuda_flags INTERFACE HELM_WITH_CUDA=0)
endif()
