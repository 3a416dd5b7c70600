# gpugate log ship: collector directory and HTTP collector (libmicrohttpd in
# the test), resume after failures, tamper detection, the CLI.
target_sources(gpugate_unit_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/ship_test.cpp)
