# Signed authorizations (issue 4): request text, SSHSIG verification,
# allowed_signers, quorum and the nonce store.
target_sources(gpugate PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/wire.cpp
  ${CMAKE_CURRENT_LIST_DIR}/request.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sshsig.cpp
  ${CMAKE_CURRENT_LIST_DIR}/allowed_signers.cpp
  ${CMAKE_CURRENT_LIST_DIR}/authorize.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nonce_store.cpp)
