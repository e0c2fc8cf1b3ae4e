// Unit tests for the OpenTelemetry semantic-convention helpers shared by keel's SERVER and CLIENT
// spans: http.request.method normalisation and the redaction of url.full and url.query.

#include "trace/semconv.hpp"

#include <gtest/gtest.h>

namespace {

using keel::trace::http_method;
using keel::trace::redact_query;
using keel::trace::redact_url_full;

TEST(SemconvHttpMethod, KnownMethodsAreKeptUnknownOnesAreOther) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    EXPECT_TRUE(http_method(m).known) << m;
    EXPECT_EQ(http_method(m).value, m);
    EXPECT_EQ(http_method(m).span_name(), m);
  }
  for (const char* m : {"PURGE", "get", "Get", "PROPFIND", "FOO", ""}) {
    EXPECT_FALSE(http_method(m).known) << m;
    EXPECT_EQ(http_method(m).value, "_OTHER") << m;
    EXPECT_EQ(http_method(m).span_name(), "HTTP") << m;
  }
}

TEST(SemconvUrl, UserinfoIsRedactedInUrlFull) {
  EXPECT_EQ(redact_url_full("https://user:pass@example.com/a?b=1"), "https://REDACTED:REDACTED@example.com/a?b=1");
  EXPECT_EQ(redact_url_full("http://token@example.com"), "http://REDACTED:REDACTED@example.com");
  EXPECT_EQ(redact_url_full("http://u:p@ss@[::1]:8080/x"), "http://REDACTED:REDACTED@[::1]:8080/x");
  EXPECT_EQ(redact_url_full("http://example.com/a@b"), "http://example.com/a@b");  // '@' in the path
  EXPECT_EQ(redact_url_full("http://example.com:8080/p?q=1#frag"), "http://example.com:8080/p?q=1#frag");
  EXPECT_EQ(redact_url_full("http://example.com/p#f?sig=x"), "http://example.com/p#f?sig=x");  // not a query
}

TEST(SemconvUrl, CredentialQueryValuesAreRedacted) {
  EXPECT_EQ(redact_query("a=1&sig=abc&Signature=def"), "a=1&sig=REDACTED&Signature=REDACTED");
  EXPECT_EQ(redact_query("AWSAccessKeyId=AKIA&X-Goog-Signature=00&x="),
            "AWSAccessKeyId=REDACTED&X-Goog-Signature=REDACTED&x=");
  EXPECT_EQ(redact_query("signature=lower&sig"), "signature=lower&sig");  // case-sensitive; no value
  EXPECT_EQ(redact_query(""), "");
  EXPECT_EQ(redact_url_full("https://s3.example.com/o?X-Goog-Signature=abc&v=1#f"),
            "https://s3.example.com/o?X-Goog-Signature=REDACTED&v=1#f");
}

}  // namespace
