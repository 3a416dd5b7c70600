# The GPU state watcher: the matcher and the watcher, driven with recorded sequences.
target_sources(gpugate_unit_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/explain_test.cpp ${CMAKE_CURRENT_LIST_DIR}/log_state_test.cpp
                                                 ${CMAKE_CURRENT_LIST_DIR}/live_path_test.cpp)
