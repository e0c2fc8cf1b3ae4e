// The property check every fuzz target uses: prints "<target>: check failed at line N: <what>"
// (the target is the source file's name, e.g. request_parser_fuzz; scripts/fuzz.sh greps for the
// line), then traps so libFuzzer records the input as a crash.
#pragma once

#include <cstdio>
#include <cstring>

namespace {  // each target is its own program: one copy per translation unit

[[noreturn, maybe_unused]] void fail_check(const char* what, int line) {
  const char* file = __BASE_FILE__;  // the target's .cpp, also when this header is expanded
  if (const char* slash = std::strrchr(file, '/')) file = slash + 1;
  const char* dot = std::strrchr(file, '.');
  const int name_length = static_cast<int>(dot != nullptr ? dot - file : static_cast<long>(std::strlen(file)));
  std::fprintf(stderr, "%.*s: check failed at line %d: %s\n", name_length, file, line, what);
  std::fflush(stderr);
  __builtin_trap();
}

}  // namespace

#define FUZZ_CHECK(cond)                      \
  do {                                        \
    if (!(cond)) fail_check(#cond, __LINE__); \
  } while (false)
