# A Debian package of keel for building services: keel-dev (headers, libkeel.a, libkeel_checks.a,
# the CMake package, the pkg-config files). Configure with -DCMAKE_INSTALL_PREFIX=/usr (Debian's
# multiarch library directory), build, then `cpack --config <build>/CPackConfig.cmake`
# (docs/using-keel.md, "Debian package").
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME keel-dev)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "C++20 HTTP framework and application server (development files)")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "keel: write HTTP handlers in C++20, link keel, ship one binary with pre-forked workers, "
       "zero-downtime upgrades, layered configuration, health checks, Prometheus metrics, JSON logs "
       "and OpenTelemetry tracing. Static libraries, headers, CMake package (find_package(keel)) and pkg-config files.")
set(CPACK_PACKAGE_CONTACT "keel maintainers <keel@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# What keelConfig.cmake / keel.pc look up for keel::keel; keel::checks also needs the suggested ones.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "nlohmann-json3-dev (>= 3.10), libtomlplusplus-dev (>= 3), zlib1g-dev, libcurl4-openssl-dev | libcurl-dev, libnghttp2-dev, libssl-dev (>= 3), pkg-config")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libpq-dev, libhiredis-dev, libsqlite3-dev, clang, cmake (>= 3.25)")
include(CPack)
