#include "keel/json_writer.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>

namespace {

TEST(JsonWriter, ObjectsArraysAndScalars) {
  keel::JsonWriter w;
  w.begin_object();
  w.key("s").value("x");
  w.key("i").value(-42);
  w.key("u").value(std::uint64_t{18446744073709551615ULL});
  w.key("d").value(0.1);
  w.key("b").value(true);
  w.key("n").null();
  w.key("a").begin_array().value(1).value("two").begin_object().end_object().begin_array().end_array().end_array();
  w.end_object();
  EXPECT_EQ(w.str(), R"({"s":"x","i":-42,"u":18446744073709551615,"d":0.1,"b":true,"n":null,"a":[1,"two",{},[]]})");
  EXPECT_TRUE(nlohmann::json::accept(w.str()));
}

TEST(JsonWriter, NonFiniteNumbersBecomeNull) {
  keel::JsonWriter w;
  w.begin_array().value(std::numeric_limits<double>::infinity()).value(std::nan("")).end_array();
  EXPECT_EQ(w.str(), "[null,null]");
}

TEST(JsonWriter, EscapesHostileBytes) {
  std::string hostile = "q\"b\\n\n\r\t\x01\x1f\x7f";
  hostile += '\0';
  hostile += "\xff\xc3\x28\xe2\x82\xac\xed\xa0\x80\xf4\x90\x80\x80\xc0\xaf";  // invalid, valid euro, surrogate
  keel::JsonWriter w;
  w.begin_object().key(hostile).value(hostile).end_object();
  const auto parsed = nlohmann::json::parse(w.str());  // must be valid JSON and valid UTF-8
  const std::string key = parsed.begin().key();
  EXPECT_EQ(key, parsed.begin().value().get<std::string>());
  EXPECT_NE(key.find("\xe2\x82\xac"), std::string::npos);  // the valid euro sign survives
  EXPECT_NE(key.find("\xef\xbf\xbd"), std::string::npos);  // invalid bytes became U+FFFD
  EXPECT_EQ(key.substr(0, 12), std::string("q\"b\\n\n\r\t\x01\x1f\x7f") + '\0');
}

TEST(JsonWriter, RejectsMisuse) {
  {
    keel::JsonWriter w;
    w.begin_object();
    EXPECT_THROW(w.value(1), std::logic_error);  // value without key
  }
  {
    keel::JsonWriter w;
    w.begin_array();
    EXPECT_THROW(w.key("k"), std::logic_error);  // key in an array
    EXPECT_THROW(w.end_object(), std::logic_error);
  }
  {
    keel::JsonWriter w;
    w.begin_object().key("k");
    EXPECT_THROW(w.end_object(), std::logic_error);  // dangling key
  }
  {
    keel::JsonWriter w;
    w.begin_object();
    EXPECT_THROW((void)w.str(), std::logic_error);  // unclosed
  }
  {
    keel::JsonWriter w;
    w.value(1);
    EXPECT_THROW(w.value(2), std::logic_error);  // two top-level values
  }
}

}  // namespace
