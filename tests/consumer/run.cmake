# SPDX-License-Identifier: MIT
# ctest driver of the consumer test: install the build tree into a fresh
# prefix, configure and build tests/consumer against it, run the program.
# -DBUILD_DIR=<mpacc build> -DSOURCE_DIR=<tests/consumer> -DWORK_DIR=<scratch>
file(REMOVE_RECURSE ${WORK_DIR})
foreach(step IN ITEMS
    "${CMAKE_COMMAND};--install;${BUILD_DIR};--prefix;${WORK_DIR}/prefix"
    "${CMAKE_COMMAND};-S;${SOURCE_DIR};-B;${WORK_DIR}/build;-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix;-DCMAKE_BUILD_TYPE=Release"
    "${CMAKE_COMMAND};--build;${WORK_DIR}/build;-j2"
    "${WORK_DIR}/build/consumer")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${step}' failed (${rc}):\n${out}")
  endif()
endforeach()
message(STATUS "${out}")
file(REMOVE_RECURSE ${WORK_DIR})
