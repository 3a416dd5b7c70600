# The fleet files (deploy/: the DaemonSet, the Helm chart, the log shippers' configurations, the
# Elasticsearch template and ingest pipeline), checked offline by tests/fleet/check_manifests.py
# against the built gpugated and gpugate. It needs yamllint, rsyslogd and python3-yaml (make deps)
# and fails, not skips, without them. docs/fleet.md.
add_test(NAME fleet
         COMMAND python3 ${CMAKE_SOURCE_DIR}/tests/fleet/check_manifests.py
                 --gpugated ${CMAKE_BINARY_DIR}/bin/gpugated --gpugate ${CMAKE_BINARY_DIR}/bin/gpugate
                 --source-dir ${CMAKE_SOURCE_DIR})
set_tests_properties(fleet PROPERTIES LABELS unit TIMEOUT 120)
