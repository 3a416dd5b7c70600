# More parts of the CLI with their own sources: gpugate log ship and prune.
target_sources(gpugate_cli PRIVATE ${CMAKE_CURRENT_LIST_DIR}/ship_cmd.cpp ${CMAKE_CURRENT_LIST_DIR}/prune_cmd.cpp)
