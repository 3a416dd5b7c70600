# The tamper-evident ledger: Merkle tree, checkpoints, reading, verification
# and the investigator's tools (ledger.cpp itself is in the main list).
target_sources(gpugate PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/merkle.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint.cpp
  ${CMAKE_CURRENT_LIST_DIR}/reader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/prune.cpp
  ${CMAKE_CURRENT_LIST_DIR}/verify.cpp
  ${CMAKE_CURRENT_LIST_DIR}/query.cpp
  ${CMAKE_CURRENT_LIST_DIR}/timeline.cpp)
