# Helpers that keep each component's CMakeLists.txt short and uniform.

# helm_library(<name> SOURCES ... DEPS ...) -> target helm_<name>, alias helm::<name>.
# Public headers live under include/helm/<name>/ (one include root for the whole project).
function(helm_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  if(ARG_SOURCES)
    add_library(helm_${name} STATIC ${ARG_SOURCES})
    target_include_directories(helm_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include
                                            PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(helm_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
    target_compile_options(helm_${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HELM_WARNINGS}>)
  else()
    add_library(helm_${name} INTERFACE)
    target_include_directories(helm_${name} INTERFACE ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(helm_${name} INTERFACE ${ARG_DEPS})
  endif()
  add_library(helm::${name} ALIAS helm_${name})
endfunction()

# helm_executable(<name> SOURCES ... DEPS ...) -> build/bin/<name>
function(helm_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HELM_WARNINGS}>)
endfunction()

# helm_test(<component> SOURCES ... DEPS ... [LABELS unit|e2e|gpu|slow] [TIMEOUT s]
#           [RERUN_ON_SIGNAL])
# -> one test executable per component, helm_<component>_test, registered with CTest.
# RERUN_ON_SIGNAL runs it through tests/rerun_on_signal.sh (one rerun if it dies by a signal).
function(helm_test component)
  cmake_parse_arguments(ARG "RERUN_ON_SIGNAL" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  set(target helm_${component}_test)
  add_executable(${target} ${ARG_SOURCES})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${target} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HELM_WARNINGS}>)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set(runner)
  if(ARG_RERUN_ON_SIGNAL)
    set(runner ${PROJECT_SOURCE_DIR}/tests/rerun_on_signal.sh)
  endif()
  # One fixed seed: tests that draw their inputs from the GoogleTest seed are properties over
  # seeds, and gtest's default (the clock) would make `make test` a different test every run.
  # scripts/seed_sweep.sh runs them over many seeds.
  add_test(NAME ${component} COMMAND ${runner} $<TARGET_FILE:${target}> --gtest_brief=1
           --gtest_random_seed=${HELM_TEST_SEED} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(${component} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
                       ENVIRONMENT "HELM_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endfunction()

# helm_subdirectories(a b c): add_subdirectory for each that has a CMakeLists.txt.
macro(helm_subdirectories)
  foreach(dir ${ARGN})
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/CMakeLists.txt)
      add_subdirectory(${dir})
    endif()
  endforeach()
endmacro()
