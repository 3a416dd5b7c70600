# More parts of the CLI with their own sources: gpugate log ship.
target_sources(gpugate_cli PRIVATE ${CMAKE_CURRENT_LIST_DIR}/ship_cmd.cpp)
