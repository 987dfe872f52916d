# SPDX-License-Identifier: MIT
# ctest driver of the test python_install: cmake --install the build tree into a
# fresh prefix and run `import mpacc` from <prefix>/<PYDIR> (the path docs/python.md gives).
# -DBUILD_DIR=<mpacc build> -DWORK_DIR=<scratch> -DPYTHON=<python3> -DPYDIR=<relative package dir>
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "python_install: cmake --install failed (${rc}):\n${out}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${WORK_DIR}/prefix/${PYDIR}
                ${PYTHON} -c "import mpacc; print(mpacc.__file__); print(mpacc.round([0.1], 'e4m3'))"
                WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "${WORK_DIR}/prefix/" OR NOT out MATCHES "0\\.1015625")
  message(FATAL_ERROR "python_install: importing the installed module failed (${rc}):\n${out}")
endif()
message(STATUS "${out}")
file(REMOVE_RECURSE ${WORK_DIR})
