# gpugated under systemd: sd_notify, journald fields, the unit, completion.
target_sources(gpugate_unit_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/service_test.cpp)
