# Install rules (KEEL_INSTALL): the public headers, libkeel.a (+ libkeel_checks.a), a CMake package
# (find_package(keel CONFIG): keelConfig.cmake, keelConfigVersion.cmake, the exported targets
# keel::keel and keel::checks) and pkg-config files. docs/using-keel.md shows each way to use them.
include(CMakePackageConfigHelpers)

# Not a cache entry: it follows CMAKE_INSTALL_LIBDIR, which GNUInstallDirs changes with the prefix.
set(KEEL_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/keel)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/keel DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
        FILES_MATCHING PATTERN "*.hpp")

# Two export sets, so that keelTargets.cmake names no libpq/hiredis/sqlite3 target: keelConfig.cmake
# loads keelChecksTargets.cmake (and looks those libraries up) only for COMPONENTS checks.
install(TARGETS keel EXPORT keelTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(EXPORT keelTargets NAMESPACE keel:: DESTINATION ${KEEL_INSTALL_CMAKEDIR} COMPONENT dev)
if(KEEL_BUILD_CHECKS)
  install(TARGETS keel_checks EXPORT keelChecksTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
  install(EXPORT keelChecksTargets NAMESPACE keel:: DESTINATION ${KEEL_INSTALL_CMAKEDIR} COMPONENT dev)
endif()

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/keelConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/keelConfig.cmake
                              INSTALL_DESTINATION ${KEEL_INSTALL_CMAKEDIR})
# 0.x: every minor version may break the API, so find_package(keel 0.1) accepts 0.1.y (y >= the
# requested patch) and refuses 0.2 (SameMajorVersion would accept any 0.y >= 0.1). From 1.0 on,
# SameMajorVersion is the rule to switch to.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/keelConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/keelConfig.cmake ${PROJECT_BINARY_DIR}/keelConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/keel-compiler-check.cmake
        DESTINATION ${KEEL_INSTALL_CMAKEDIR} COMPONENT dev)

# pkg-config. prefix is found from the .pc file's own place (${pcfiledir}), so the files stay
# right for `cmake --install --prefix DIR`, DESTDIR and a CPack package, whatever prefix was
# configured.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(KEEL_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(KEEL_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH KEEL_PC_UP "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" KEEL_PC_UP "${KEEL_PC_UP}")
  set(KEEL_PC_PREFIX "\${pcfiledir}/${KEEL_PC_UP}")
  set(KEEL_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(KEEL_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(KEEL_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/keel.pc.in ${PROJECT_BINARY_DIR}/keel.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/keel.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
if(KEEL_BUILD_CHECKS)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/keel-checks.pc.in ${PROJECT_BINARY_DIR}/keel-checks.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/keel-checks.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
endif()
