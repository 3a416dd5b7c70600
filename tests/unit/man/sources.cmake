# The interface a person meets: the man pages match every --help, local
# RFC 3339 times, and progress of the long log commands only where wanted.
target_sources(gpugate_unit_tests PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/man_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/timefmt_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/progress_test.cpp)
# man_test runs both binaries' --help and reads the pages built in build/man.
add_dependencies(gpugate_unit_tests gpugated gpugate_cli gpugate_man)
target_compile_definitions(gpugate_unit_tests PRIVATE GG_MAN_BUILD_DIR="${CMAKE_BINARY_DIR}/man")
