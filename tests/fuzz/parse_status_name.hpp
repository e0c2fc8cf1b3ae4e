// keel's ParseStatus as text, for the parser targets' failure reports.
#pragma once

#include "http/request_parser.hpp"

namespace {

[[maybe_unused]] const char* status_name(keel::http::ParseStatus s) {
  switch (s) {
    case keel::http::ParseStatus::kIncomplete:
      return "incomplete";
    case keel::http::ParseStatus::kComplete:
      return "complete";
    case keel::http::ParseStatus::kError:
      return "error";
  }
  return "?";
}

}  // namespace
