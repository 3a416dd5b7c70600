# `gpugate log ship`: the state file and shipping loop, and its destinations
# (a collector directory; an HTTP(S) collector through libcurl), and the
# --witness client (c2sp.org/tlog-witness add-checkpoint, libcurl).
pkg_check_modules(LIBCURL REQUIRED IMPORTED_TARGET libcurl)
target_sources(gpugate PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/ship.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dest_dir.cpp
  ${CMAKE_CURRENT_LIST_DIR}/http.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dest_http.cpp
  ${CMAKE_CURRENT_LIST_DIR}/witness.cpp)
target_link_libraries(gpugate PUBLIC PkgConfig::LIBCURL)
