# The GCC < 13 co_await note, shared by keel's CMakeLists.txt and the installed keelConfig.cmake so
# that a service built against keel hears it however it consumes keel.
#
# GCC before 13 destroys aggregate temporaries inside co_await twice (include/keel/async.hpp).
# keel rejects the forms it can see at compile time; a service's own coroutines are not checked.
#
# keel_check_coawait_compiler(<mode>): <mode> is WARNING for a consumer (the note is for the
# author of the service's coroutines) and STATUS when keel is built on its own (keel's code
# follows the rule and tests/compile checks it: a warning on every configure of keel's own CI
# would only train people to ignore it).
function(keel_check_coawait_compiler mode)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    message(${mode} "keel: GCC ${CMAKE_CXX_COMPILER_VERSION} miscompiles aggregate temporaries (lambdas with "
                    "captures, braced structs) inside co_await expressions. keel's own code avoids them and rejects "
                    "them in keel::offload/keel::fetch, but your coroutines are not checked: build services with "
                    "clang (-DCMAKE_CXX_COMPILER=clang++), or follow docs/api.md 'Compilers'.")
  endif()
endfunction()
