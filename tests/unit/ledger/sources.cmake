# Ledger tests: RFC 6962 and signed-note vectors, the writer, verification
# with a tamper suite, a deterministic fuzz loop, a 1M-record ledger, and the
# `gpugate log` commands.
target_sources(gpugate_unit_tests PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/merkle_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ledger_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/log_cli_test.cpp)
