# Ledger tests: RFC 6962 and signed-note vectors, the writer, verification
# with a tamper suite, a deterministic fuzz loop, a 1M-record ledger, and the
# `gpugate log` commands; verify's hardening (the unsigned last checkpoint,
# recovered torn lines, FIFOs and symlinks named like segments).
target_sources(gpugate_unit_tests PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/merkle_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ledger_health_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ledger_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/log_cli_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/verify_hardening_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/resume_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/power_loss_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/compress_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/prune_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/budget_test.cpp)
