# gpugated under systemd: sd_notify (readiness, status, watchdog) and the
# journald fields of each human line.
target_sources(gpugate PRIVATE ${CMAKE_CURRENT_LIST_DIR}/service.cpp)
