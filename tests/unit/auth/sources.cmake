# Signed authorizations (issue 4) and the control socket that takes them.
# The tests use lib/auth's private wire helpers to build SSHSIG blobs by hand.
target_sources(gpugate_unit_tests PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/request_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sshsig_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/allowed_signers_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/authorize_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nonce_store_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/fuzz_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/request_cli_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/grant_service_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/control_service_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/control_server_test.cpp)
target_include_directories(gpugate_unit_tests PRIVATE ${CMAKE_SOURCE_DIR}/userspace/lib/auth)
