# What "cmake --install" (and so make deb) puts on a host: the daemon, the
# CLI, the systemd unit, the default policy and /etc/default file (both
# conffiles in the package), the tmpfiles entry for /var/lib/gpugate, and
# bash completion. The module's source goes with gpugate-dkms (debian/).
include(GNUInstallDirs)

install(TARGETS gpugated RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS gpugate_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# For /usr (the packages), the places this system's systemd and /etc want:
# Debian 12 keeps units in /lib/systemd/system. Any other prefix gets paths
# under it, so "cmake --install --prefix DIR" never writes outside DIR.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  pkg_get_variable(GPUGATE_UNITDIR_DEFAULT systemd systemdsystemunitdir)
  pkg_get_variable(GPUGATE_TMPFILESDIR_DEFAULT systemd tmpfilesdir)
  set(GPUGATE_SYSCONFDIR ${CMAKE_INSTALL_FULL_SYSCONFDIR})
endif()
if(NOT GPUGATE_UNITDIR_DEFAULT)
  set(GPUGATE_UNITDIR_DEFAULT lib/systemd/system)
endif()
if(NOT GPUGATE_TMPFILESDIR_DEFAULT)
  set(GPUGATE_TMPFILESDIR_DEFAULT lib/tmpfiles.d)
endif()
if(NOT GPUGATE_SYSCONFDIR)
  set(GPUGATE_SYSCONFDIR ${CMAKE_INSTALL_SYSCONFDIR})
endif()
set(GPUGATE_SYSTEMD_UNITDIR ${GPUGATE_UNITDIR_DEFAULT} CACHE PATH "Where gpugated.service goes")
set(GPUGATE_TMPFILESDIR ${GPUGATE_TMPFILESDIR_DEFAULT} CACHE PATH "Where gpugate's tmpfiles.d entry goes")

install(FILES ${CMAKE_SOURCE_DIR}/dist/systemd/gpugated.service DESTINATION ${GPUGATE_SYSTEMD_UNITDIR})
install(FILES ${CMAKE_SOURCE_DIR}/dist/tmpfiles/gpugate.conf DESTINATION ${GPUGATE_TMPFILESDIR})
install(FILES ${CMAKE_SOURCE_DIR}/policy/default.toml DESTINATION ${GPUGATE_SYSCONFDIR}/gpugate
        RENAME policy.toml)
install(FILES ${CMAKE_SOURCE_DIR}/dist/default/gpugate DESTINATION ${GPUGATE_SYSCONFDIR}/default)
install(FILES ${CMAKE_SOURCE_DIR}/dist/bash-completion/gpugate ${CMAKE_SOURCE_DIR}/dist/bash-completion/gpugated
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
