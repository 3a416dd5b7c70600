# Man pages: gpugated(8), gpugate(8), gpugate-policy(5), each rendered by
# scdoc from one source in docs/man, built with everything and installed.
# tests/unit/man checks that every option --help lists is in its page.
include(GNUInstallDirs)

find_program(SCDOC scdoc)
if(NOT SCDOC)
  message(FATAL_ERROR "scdoc not found: it builds the man pages (docs/man/*.scd). Install it with make deps "
                      "(or apt-get install scdoc)")
endif()

set(GPUGATE_MAN_PAGES gpugated.8 gpugate.8 gpugate-policy.5)
set(GPUGATE_MAN_OUTPUTS)
foreach(page IN LISTS GPUGATE_MAN_PAGES)
  set(src ${CMAKE_SOURCE_DIR}/docs/man/${page}.scd)
  set(out ${CMAKE_BINARY_DIR}/man/${page})
  # scdoc reads stdin only; a shell redirect keeps a failed render from
  # leaving a half-written page that counts as up to date.
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND sh -c "\"$0\" < \"$1\" > \"$2.tmp\" && mv \"$2.tmp\" \"$2\"" ${SCDOC} ${src} ${out}
    DEPENDS ${src}
    COMMENT "scdoc ${page}"
    VERBATIM)
  list(APPEND GPUGATE_MAN_OUTPUTS ${out})
  string(REGEX MATCH "[0-9]$" section ${page})
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()
add_custom_target(gpugate_man ALL DEPENDS ${GPUGATE_MAN_OUTPUTS})
