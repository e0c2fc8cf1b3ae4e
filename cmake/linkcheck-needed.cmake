# Run after each <module>_linkcheck library is linked (KEEL_CHECK_LINK_LAYERS, CMakeLists.txt):
# the library was linked with --as-needed, so a module it declares in DEPS but calls nothing of has
# no DT_NEEDED entry. Then DEPS says more than the module uses: fail, naming it.
#   cmake -DLIBRARY=<.so> -DDEPS=<module,module,...> -DREADELF=<readelf> -P linkcheck-needed.cmake
execute_process(COMMAND ${READELF} -d ${LIBRARY} OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${READELF} -d ${LIBRARY} failed (${rc})")
endif()
string(REPLACE "," ";" deps "${DEPS}")
set(unused)
foreach(dep IN LISTS deps)
  if(NOT dynamic MATCHES "\\[libkeel_${dep}_linkcheck\\.so\\]")
    list(APPEND unused ${dep})
  endif()
endforeach()
if(unused)
  list(JOIN unused ", " unused)
  get_filename_component(name ${LIBRARY} NAME)
  message(FATAL_ERROR "${name}: its module calls nothing of ${unused}: remove it from the module's DEPS "
                      "(CMakeLists.txt, keel_module; header-only uses are scripts/check-layers.py's business)")
endif()
