// Unit tests for the .env parser: grammar, quoting, expansion, error reporting (every problem in
// one pass, each with its line) and file loading.

#include "config/dotenv.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using keel::config::DotenvEntry;
using keel::config::DotenvError;
using keel::config::DotenvLookup;
using keel::config::DotenvResult;
using keel::config::load_dotenv_file;
using keel::config::parse_dotenv;
using namespace std::literals;

namespace {

using Env = std::map<std::string, std::string, std::less<>>;

// A fake process environment; records which names were asked for.
struct FakeEnv {
  Env vars;
  std::vector<std::string> asked;
  DotenvLookup lookup() {
    return [this](std::string_view name) -> std::optional<std::string> {
      asked.emplace_back(name);
      if (const auto it = vars.find(name); it != vars.end()) return it->second;
      return std::nullopt;
    };
  }
};

DotenvResult parse(std::string_view text, Env env = {}) {
  FakeEnv fake{std::move(env), {}};
  return parse_dotenv(text, fake.lookup());
}

std::string describe(const DotenvResult& r) {
  std::string s;
  for (const auto& e : r.entries) s += "  entry " + std::to_string(e.line) + ": " + e.key + "=[" + e.value + "]\n";
  for (const auto& e : r.errors) s += "  error " + std::to_string(e.line) + ": " + e.message + "\n";
  return s;
}

const DotenvEntry* find(const DotenvResult& r, std::string_view key) {
  for (const auto& e : r.entries)
    if (e.key == key) return &e;
  return nullptr;
}

// The value of key, or "<missing>" so that a missing key fails with a readable message.
std::string value_of(const DotenvResult& r, std::string_view key) {
  const DotenvEntry* e = find(r, key);
  return e ? e->value : "<missing>";
}

// Parses a single entry that must succeed and returns its value.
std::string single(std::string_view text, Env env = {}) {
  const DotenvResult r = parse(text, std::move(env));
  EXPECT_TRUE(r.errors.empty()) << text << "\n" << describe(r);
  EXPECT_EQ(r.entries.size(), 1u) << text << "\n" << describe(r);
  return r.entries.empty() ? "<missing>" : r.entries[0].value;
}

// Parses text that must produce exactly one error and no entries; returns it.
DotenvError single_error(std::string_view text, Env env = {}) {
  const DotenvResult r = parse(text, std::move(env));
  EXPECT_TRUE(r.entries.empty()) << text << "\n" << describe(r);
  EXPECT_EQ(r.errors.size(), 1u) << text << "\n" << describe(r);
  return r.errors.empty() ? DotenvError{-1, "<none>"} : r.errors[0];
}

// --- Basic grammar -------------------------------------------------------------------------------

TEST(DotenvParse, EmptyInputHasNothing) {
  for (std::string_view text : {""sv, "\n\n"sv, "   \n\t\n"sv, "# only a comment"sv}) {
    const DotenvResult r = parse(text);
    EXPECT_TRUE(r.entries.empty()) << describe(r);
    EXPECT_TRUE(r.errors.empty()) << describe(r);
  }
}

TEST(DotenvParse, KeyValueWithLines) {
  const DotenvResult r = parse("A=1\nB=two\n\nC=three four\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  ASSERT_EQ(r.entries.size(), 3u);
  EXPECT_EQ(r.entries[0].key, "A");
  EXPECT_EQ(r.entries[0].value, "1");
  EXPECT_EQ(r.entries[0].line, 1);
  EXPECT_EQ(r.entries[1].key, "B");
  EXPECT_EQ(r.entries[1].value, "two");
  EXPECT_EQ(r.entries[1].line, 2);
  EXPECT_EQ(r.entries[2].key, "C");
  EXPECT_EQ(r.entries[2].value, "three four");
  EXPECT_EQ(r.entries[2].line, 4);
}

TEST(DotenvParse, LastLineWithoutNewline) {
  const DotenvResult r = parse("A=1\nB=2");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "B"), "2");
  EXPECT_EQ(find(r, "B")->line, 2);
}

TEST(DotenvParse, CommentAndBlankLinesAreIgnored) {
  const DotenvResult r = parse("# heading\n\n   # indented comment\n\t# tab-indented\n  \nA=1\n#B=2\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  ASSERT_EQ(r.entries.size(), 1u);
  EXPECT_EQ(r.entries[0].key, "A");
  EXPECT_EQ(r.entries[0].line, 6);
}

TEST(DotenvParse, ExportPrefix) {
  const DotenvResult r = parse("export A=1\nexport\tB=2\nexport    C = 3\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(value_of(r, "B"), "2");
  EXPECT_EQ(value_of(r, "C"), "3");
  EXPECT_EQ(find(r, "export"), nullptr);
}

TEST(DotenvParse, KeyNamedExport) {
  // Without a key after it, "export" is the key itself.
  const DotenvResult r = parse("export=1\nexported=2\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "export"), "1");
  EXPECT_EQ(value_of(r, "exported"), "2");
  EXPECT_EQ(value_of(parse("export =3\n"), "export"), "3");
}

TEST(DotenvParse, WhitespaceAroundEquals) {
  const DotenvResult r = parse("A = 1\nB\t=\t2\nC=  3  \n  D=4\nE =\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(value_of(r, "B"), "2");
  EXPECT_EQ(value_of(r, "C"), "3");
  EXPECT_EQ(value_of(r, "D"), "4");
  EXPECT_EQ(value_of(r, "E"), "");
}

TEST(DotenvParse, KeyCharacters) {
  const DotenvResult r = parse("_A=1\na.b.c=2\nMixed_Case9=3\nx=4\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "_A"), "1");
  EXPECT_EQ(value_of(r, "a.b.c"), "2");
  EXPECT_EQ(value_of(r, "Mixed_Case9"), "3");
  EXPECT_EQ(value_of(r, "x"), "4");
}

// --- Unquoted values -----------------------------------------------------------------------------

TEST(DotenvUnquoted, EmptyValues) {
  EXPECT_EQ(single("A="), "");
  EXPECT_EQ(single("A=\n"), "");
  EXPECT_EQ(single("A=   \t\n"), "");
}

TEST(DotenvUnquoted, TrailingWhitespaceTrimmedInnerKept) {
  EXPECT_EQ(single("A=hello world   \t\n"), "hello world");
  EXPECT_EQ(single("A=a  b\tc\n"), "a  b\tc");
}

TEST(DotenvUnquoted, InlineComments) {
  EXPECT_EQ(single("A=b#c"), "b#c");  // no blank before '#': part of the value
  EXPECT_EQ(single("A=b #c"), "b");
  EXPECT_EQ(single("A=b\t# c d"), "b");
  EXPECT_EQ(single("A=b   # comment   "), "b");
  EXPECT_EQ(single("A=http://h/#frag"), "http://h/#frag");
  EXPECT_EQ(single("A=#c"), "#c");
  EXPECT_EQ(single("A= # nothing"), "");
  EXPECT_EQ(single("A=x #1 #2"), "x");
}

TEST(DotenvUnquoted, QuotesAndBackslashesInsideAreLiteral) {
  EXPECT_EQ(single("A=it's"), "it's");
  EXPECT_EQ(single("A=say \"hi\""), "say \"hi\"");
  EXPECT_EQ(single("A=C:\\path\\n"), "C:\\path\\n");
}

// --- Single-quoted values ------------------------------------------------------------------------

TEST(DotenvSingleQuoted, IsLiteral) {
  EXPECT_EQ(single("A='$HOME ${HOME} \\n \\'", {{"HOME", "/root"}}), "$HOME ${HOME} \\n \\");
  EXPECT_EQ(single("A='  padded  '"), "  padded  ");
  EXPECT_EQ(single("A='a #not a comment'"), "a #not a comment");
  EXPECT_EQ(single("A='say \"hi\"'"), "say \"hi\"");
  EXPECT_EQ(single("A=''"), "");
}

TEST(DotenvSingleQuoted, TrailingCommentAndBlanks) {
  EXPECT_EQ(single("A='x'   "), "x");
  EXPECT_EQ(single("A='x' # comment"), "x");
  EXPECT_EQ(single("A='x'#comment"), "x");
  EXPECT_EQ(single("A = 'x'"), "x");
}

TEST(DotenvSingleQuoted, SpansLines) {
  const DotenvResult r = parse("A='line one\nline two\n\n# not a comment'\nB=after\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(value_of(r, "A"), "line one\nline two\n\n# not a comment");
  EXPECT_EQ(find(r, "A")->line, 1);
  EXPECT_EQ(find(r, "B")->line, 5);
}

// --- Double-quoted values ------------------------------------------------------------------------

TEST(DotenvDoubleQuoted, Escapes) {
  EXPECT_EQ(single(R"(A="a\nb\rc\td")"), "a\nb\rc\td");
  EXPECT_EQ(single(R"(A="say \"hi\"")"), "say \"hi\"");
  EXPECT_EQ(single(R"(A="back\\slash")"), "back\\slash");
  EXPECT_EQ(single(R"(A="ends with \\")"), "ends with \\");
  EXPECT_EQ(single(R"(A="\$HOME \${HOME}")", {{"HOME", "/root"}}), "$HOME ${HOME}");
  EXPECT_EQ(single(R"(A="")"), "");
}

TEST(DotenvDoubleQuoted, KeepsBlanksAndHash) {
  EXPECT_EQ(single("A=\"  padded  \""), "  padded  ");
  EXPECT_EQ(single("A=\"a #b\" # real comment"), "a #b");
  EXPECT_EQ(single("A=\"x\"#c"), "x");
  EXPECT_EQ(single("A=\"it's\""), "it's");
}

TEST(DotenvDoubleQuoted, SpansLinesKeepingNewlines) {
  const DotenvResult r = parse(
      "CERT=\"-----BEGIN-----\n"
      "abc\\tdef\n"
      "-----END-----\"\n"
      "NEXT=1\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(value_of(r, "CERT"), "-----BEGIN-----\nabc\tdef\n-----END-----");
  EXPECT_EQ(find(r, "CERT")->line, 1);
  EXPECT_EQ(find(r, "NEXT")->line, 4);
}

TEST(DotenvDoubleQuoted, ExpandsVariables) {
  EXPECT_EQ(single("A=\"${HOME}/x and $USER\"", {{"HOME", "/root"}, {"USER", "me"}}), "/root/x and me");
}

// --- Expansion -----------------------------------------------------------------------------------

TEST(DotenvExpand, BracedAndBareFromEnvironment) {
  const Env env = {{"HOME", "/root"}, {"USER", "me"}};
  EXPECT_EQ(single("A=${HOME}/bin", env), "/root/bin");
  EXPECT_EQ(single("A=$HOME/bin", env), "/root/bin");
  EXPECT_EQ(single("A=$USER@$HOME", env), "me@/root");
  EXPECT_EQ(single("A=${USER}name", env), "mename");
  EXPECT_EQ(single("A=$USERname", env), "");  // the name runs on: USERname is unknown
}

TEST(DotenvExpand, EarlierKeyBeatsEnvironment) {
  FakeEnv env{{{"HOST", "from-env"}, {"PORT", "9999"}}, {}};
  const DotenvResult r = parse_dotenv("HOST=from-file\nURL=http://${HOST}:${PORT}\nBARE=$HOST\n", env.lookup());
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "URL"), "http://from-file:9999");
  EXPECT_EQ(value_of(r, "BARE"), "from-file");
  // HOST came from the file, so the environment is only asked for PORT.
  EXPECT_EQ(env.asked, std::vector<std::string>{"PORT"});
}

TEST(DotenvExpand, LaterKeyIsNotVisibleEarlier) {
  const DotenvResult r = parse("A=${B}\nB=file\n", {{"B", "env"}});
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "A"), "env");
}

TEST(DotenvExpand, ChainsThroughExpandedValues) {
  const DotenvResult r = parse("ROOT=/srv\nAPP=${ROOT}/app\nLOGS=${APP}/logs\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "LOGS"), "/srv/app/logs");
}

TEST(DotenvExpand, SelfReferenceAppends) {
  const DotenvResult r = parse("PATH=${PATH}:/opt/bin\nPATH=$PATH:/more\n", {{"PATH", "/usr/bin"}});
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "PATH"), "/usr/bin:/opt/bin:/more");
}

TEST(DotenvExpand, UnknownIsEmptyWithoutError) {
  EXPECT_EQ(single("A=x${NOPE}y$NOPE2"), "xy");
  EXPECT_EQ(single("A=\"[${NOPE}]\""), "[]");
}

TEST(DotenvExpand, DefaultWhenUnsetOrEmpty) {
  EXPECT_EQ(single("A=${X:-fallback}"), "fallback");
  EXPECT_EQ(single("A=${X:-fallback}", {{"X", ""}}), "fallback");
  EXPECT_EQ(single("A=${X:-fallback}", {{"X", "set"}}), "set");
  EXPECT_EQ(single("A=${X:-}"), "");
  EXPECT_EQ(single("A=${X:-two words}"), "two words");
  EXPECT_EQ(single("A=\"${X:-quoted default}\""), "quoted default");
  const DotenvResult r = parse("X=\nA=${X:-x}\n", {{"X", "env"}});
  EXPECT_EQ(value_of(r, "A"), "x");  // the empty X from the file shadows the environment
}

TEST(DotenvExpand, DefaultMayExpandVariables) {
  EXPECT_EQ(single("A=${X:-${Y}/z}", {{"Y", "why"}}), "why/z");
  EXPECT_EQ(single("A=${X:-${Y:-deep}}"), "deep");
  EXPECT_EQ(single("A=${X:-$Y}", {{"Y", "bare"}}), "bare");
}

TEST(DotenvExpand, DollarWithoutNameIsLiteral) {
  EXPECT_EQ(single("A=$5"), "$5");
  EXPECT_EQ(single("A=costs $"), "costs $");
  EXPECT_EQ(single("A=$$"), "$$");
  EXPECT_EQ(single("A=a $ b"), "a $ b");
  EXPECT_EQ(single("A=\"$5 $-\""), "$5 $-");
  EXPECT_EQ(single("A=$.x"), "$.x");
}

TEST(DotenvExpand, BareNameStopsAtDotBracedNameMayHaveDots) {
  const DotenvResult r = parse("app.host=h\nA=${app.host}\nB=$HOST.example\n", {{"HOST", "www"}});
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "A"), "h");
  EXPECT_EQ(value_of(r, "B"), "www.example");
}

TEST(DotenvExpand, NotInSingleQuotes) {
  EXPECT_EQ(single("A='${X:-d} $X'", {{"X", "x"}}), "${X:-d} $X");
}

TEST(DotenvExpand, ExpandedTextIsNotReparsed) {
  // A value brought in by expansion is data: its '#', quotes and '$' mean nothing.
  const DotenvResult r = parse("A=\"x #y \\${Z}\"\nB=$A\nC=${A}\n", {{"Z", "z"}});
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "B"), "x #y ${Z}");
  EXPECT_EQ(value_of(r, "C"), "x #y ${Z}");
}

TEST(DotenvExpand, EmptyLookupFunctionKnowsNothing) {
  const DotenvResult r = parse_dotenv("A=1\nB=${A}${HOME}\n", DotenvLookup{});
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "B"), "1");
}

TEST(DotenvExpand, UnterminatedBraceIsAnError) {
  for (std::string_view text : {"A=${HOME"sv, "A=x${"sv, "A=\"${HOME\""sv, "A=${X:-abc"sv, "A=\"${X:-${Y}\""sv}) {
    const DotenvError e = single_error(text);
    EXPECT_EQ(e.line, 1) << text;
    EXPECT_NE(e.message.find("unterminated '${'"), std::string::npos) << text << ": " << e.message;
    EXPECT_NE(e.message.find(" A"), std::string::npos) << text << ": " << e.message;
  }
}

TEST(DotenvExpand, UnsupportedReferenceIsAnError) {
  for (std::string_view text : {"A=${}"sv, "A=${1X}"sv, "A=${X-d}"sv, "A=${X:?msg}"sv, "A=${X Y}"sv}) {
    const DotenvError e = single_error(text);
    EXPECT_EQ(e.line, 1) << text;
    EXPECT_NE(e.message.find("invalid variable reference"), std::string::npos) << text << ": " << e.message;
  }
}

TEST(DotenvExpand, DeepNestingIsRefusedNotRecursedForever) {
  std::string text = "A=";
  for (int i = 0; i < 10000; ++i) text += "${X:-";
  text += "x";
  text += std::string(10000, '}');
  const DotenvError e = single_error(text);
  EXPECT_NE(e.message.find("nested too deeply"), std::string::npos) << e.message;
}

// --- Errors --------------------------------------------------------------------------------------

TEST(DotenvErrors, LineWithoutEquals) {
  const DotenvError e = single_error("\n\nJUST_A_WORD\n");
  EXPECT_EQ(e.line, 3);
  EXPECT_NE(e.message.find("'='"), std::string::npos) << e.message;
  EXPECT_EQ(single_error("export A\n").line, 1);
}

TEST(DotenvErrors, InvalidKeys) {
  for (std::string_view text : {"1A=x"sv, "A-B=x"sv, "A B=x"sv, "\"A\"=x"sv, "$A=x"sv, "ä=x"sv}) {
    const DotenvError e = single_error(text);
    EXPECT_EQ(e.line, 1) << text;
    EXPECT_NE(e.message.find("invalid key"), std::string::npos) << text << ": " << e.message;
  }
  const DotenvError e = single_error("=value");
  EXPECT_NE(e.message.find("missing key"), std::string::npos) << e.message;
  EXPECT_NE(single_error("A-B=x").message.find("'A-B'"), std::string::npos);
}

TEST(DotenvErrors, UnterminatedQuoteAtOpeningLine) {
  const DotenvError d = single_error("\nKEY=\"abc\n# no closing quote follows\n");
  EXPECT_EQ(d.line, 2);
  EXPECT_EQ(d.message, "unterminated double-quoted value for KEY");
  const DotenvError s = single_error("KEY='abc\n");
  EXPECT_EQ(s.line, 1);
  EXPECT_EQ(s.message, "unterminated single-quoted value for KEY");
  // An escaped quote does not close the value.
  EXPECT_EQ(single_error(R"(KEY="abc\")").message, "unterminated double-quoted value for KEY");
}

TEST(DotenvErrors, UnterminatedQuoteDoesNotSwallowTheRest) {
  // The value never closes, so the lines after it are parsed as entries again.
  const DotenvResult r = parse("A=1\nB='oops\nC=3\nD x\nE=5\n");
  ASSERT_EQ(r.errors.size(), 2u) << describe(r);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[0].message, "unterminated single-quoted value for B");
  EXPECT_EQ(r.errors[1].line, 4);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(value_of(r, "C"), "3");
  EXPECT_EQ(value_of(r, "E"), "5");
  EXPECT_EQ(find(r, "B"), nullptr);
}

TEST(DotenvErrors, GarbageAfterClosingQuote) {
  for (std::string_view text : {"A=\"x\"y"sv, "A='x' y"sv, "A='it''s'"sv, "A=\"x\" \"y\""sv}) {
    const DotenvError e = single_error(text);
    EXPECT_EQ(e.line, 1) << text;
    EXPECT_EQ(e.message, "unexpected characters after the closing quote of A") << text;
  }
  // Reported on the line of the closing quote.
  EXPECT_EQ(parse("\nA=\"one\ntwo\" three\nB=1").errors.at(0).line, 3);
}

TEST(DotenvErrors, UnknownEscapeNamesItsLine) {
  const DotenvError e = single_error(R"(A="bad \q escape")");
  EXPECT_EQ(e.line, 1);
  EXPECT_EQ(e.message, "unknown escape sequence \\q in the value of A");
  const DotenvError later = single_error("X=\"first line\nsecond \\' line\"\n");
  EXPECT_EQ(later.line, 2);
  EXPECT_NE(later.message.find("\\'"), std::string::npos) << later.message;
  const DotenvError eol = single_error("X=\"continued \\\nnext\"\n");
  EXPECT_EQ(eol.line, 1);
  EXPECT_NE(eol.message.find("backslash at the end of a line"), std::string::npos) << eol.message;
  // The same escape in a default is checked even when the default is not used.
  EXPECT_EQ(single_error(R"(A="${X:-\q}")", {{"X", "set"}}).message, "unknown escape sequence \\q in the value of A");
}

TEST(DotenvErrors, AllProblemsReportedInOnePass) {
  const DotenvResult r = parse(
      "GOOD1=1\n"           // 1
      "no equals here\n"    // 2
      "9BAD=x\n"            // 3
      "Q=\"x\" trailing\n"  // 4
      "GOOD2=2\n"           // 5
      "E=\"\\z\"\n"         // 6
      "R=${oops\n"          // 7
      "M=\"multi\n"         // 8
      "line \\q\"\n"        // 9
      "GOOD3=3\n"           // 10
      "U='never closed\n"   // 11
      "GOOD4=4\n");         // 12
  ASSERT_EQ(r.errors.size(), 7u) << describe(r);
  const std::vector<int> lines = {2, 3, 4, 6, 7, 9, 11};
  for (std::size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(r.errors[i].line, lines[i]) << describe(r);
  EXPECT_NE(r.errors[0].message.find("'='"), std::string::npos);
  EXPECT_NE(r.errors[1].message.find("invalid key '9BAD'"), std::string::npos);
  EXPECT_NE(r.errors[2].message.find("closing quote of Q"), std::string::npos);
  EXPECT_NE(r.errors[3].message.find("\\z"), std::string::npos);
  EXPECT_NE(r.errors[4].message.find("'${'"), std::string::npos);
  EXPECT_NE(r.errors[5].message.find("\\q in the value of M"), std::string::npos);
  EXPECT_EQ(r.errors[6].message, "unterminated single-quoted value for U");
  ASSERT_EQ(r.entries.size(), 4u) << describe(r);
  EXPECT_EQ(find(r, "GOOD1")->line, 1);
  EXPECT_EQ(find(r, "GOOD2")->line, 5);
  EXPECT_EQ(find(r, "GOOD3")->line, 10);
  EXPECT_EQ(find(r, "GOOD4")->line, 12);
}

TEST(DotenvErrors, FailedEntryIsNotDefined) {
  // B's value is an error, so C's ${B} falls through to the environment.
  const DotenvResult r = parse("B=\"\\q\"\nC=${B}\n", {{"B", "env"}});
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(find(r, "B"), nullptr);
  EXPECT_EQ(value_of(r, "C"), "env");
}

TEST(DotenvErrors, NulByte) {
  const DotenvResult r = parse("A=1\nB=x\0y\n# c\0mment\nC=3\n"s);
  ASSERT_EQ(r.errors.size(), 2u) << describe(r);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_NE(r.errors[0].message.find("NUL"), std::string::npos) << r.errors[0].message;
  EXPECT_EQ(r.errors[1].line, 3);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(find(r, "B"), nullptr);
  EXPECT_EQ(value_of(r, "C"), "3");
  // Inside a multi-line value: the line of the NUL.
  const DotenvError e = single_error("A='x\ny\0z'\n"s);
  EXPECT_EQ(e.line, 2);
}

// --- Duplicates ----------------------------------------------------------------------------------

TEST(DotenvDuplicates, LaterWinsOneEntryAtLaterLine) {
  const DotenvResult r = parse("A=first\nB=b\nA=second\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  ASSERT_EQ(r.entries.size(), 2u) << describe(r);
  EXPECT_EQ(r.entries[0].key, "B");
  EXPECT_EQ(r.entries[1].key, "A");
  EXPECT_EQ(r.entries[1].value, "second");
  EXPECT_EQ(r.entries[1].line, 3);
}

TEST(DotenvDuplicates, ExpansionSeesTheValueAtThatPoint) {
  const DotenvResult r = parse("A=1\nX=$A\nA=2\nY=$A\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "X"), "1");
  EXPECT_EQ(value_of(r, "Y"), "2");
  EXPECT_EQ(r.entries.size(), 3u);
}

TEST(DotenvDuplicates, FailedRedefinitionKeepsEarlierValue) {
  const DotenvResult r = parse("A=1\nA=\"\\q\"\n");
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(find(r, "A")->line, 1);
}

// --- Line endings and BOM ------------------------------------------------------------------------

TEST(DotenvEncoding, CrlfLineEndings) {
  const DotenvResult r = parse("# c\r\nA=1\r\nB = two words \r\nC='q'\r\nD=\"multi\r\nline\"\r\nE=x #c\r\n\r\nF=\r\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(value_of(r, "B"), "two words");
  EXPECT_EQ(value_of(r, "C"), "q");
  EXPECT_EQ(value_of(r, "D"), "multi\nline");
  EXPECT_EQ(value_of(r, "E"), "x");
  EXPECT_EQ(value_of(r, "F"), "");
  EXPECT_EQ(find(r, "A")->line, 2);
  EXPECT_EQ(find(r, "F")->line, 9);
  EXPECT_EQ(parse("B\r\nA=1\r\n").errors.at(0).line, 1);
  EXPECT_EQ(parse("A=1\r\nB\r\n").errors.at(0).line, 2);
}

TEST(DotenvEncoding, Utf8BomSkipped) {
  const DotenvResult r = parse(
      "\xEF\xBB\xBF"
      "A=1\nB=\xC3\xA9t\xC3\xA9\n");
  ASSERT_TRUE(r.errors.empty()) << describe(r);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(find(r, "A")->line, 1);
  EXPECT_EQ(value_of(r, "B"), "\xC3\xA9t\xC3\xA9");  // UTF-8 values pass through untouched
  // Only at the start: elsewhere it is part of the text.
  EXPECT_EQ(single("A=x\xEF\xBB\xBF"), "x\xEF\xBB\xBF");
}

// --- Files ---------------------------------------------------------------------------------------

class DotenvFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("keel_dotenv_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const std::string& content) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }
  std::filesystem::path dir_;
};

TEST_F(DotenvFile, LoadsAndParses) {
  const std::string path = write(".env", "\xEF\xBB\xBF# app\r\nexport A=1\r\nB=\"${A}/x\"\r\nbroken\r\n");
  FakeEnv env;
  const DotenvResult r = load_dotenv_file(path, env.lookup());
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(r.errors[0].line, 4);
  EXPECT_EQ(value_of(r, "A"), "1");
  EXPECT_EQ(value_of(r, "B"), "1/x");
}

TEST_F(DotenvFile, MissingFileIsOneErrorAtLineZero) {
  const std::string path = (dir_ / "does-not-exist.env").string();
  const DotenvResult r = load_dotenv_file(path, DotenvLookup{});
  EXPECT_TRUE(r.entries.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_NE(r.errors[0].message.find(path), std::string::npos) << r.errors[0].message;
  EXPECT_NE(r.errors[0].message.find("No such file"), std::string::npos) << r.errors[0].message;
}

TEST_F(DotenvFile, DirectoryIsUnreadable) {
  const DotenvResult r = load_dotenv_file(dir_.string(), DotenvLookup{});
  EXPECT_TRUE(r.entries.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_NE(r.errors[0].message.find("directory"), std::string::npos) << r.errors[0].message;
}

TEST_F(DotenvFile, EmptyFileIsFine) {
  const DotenvResult r = load_dotenv_file(write("empty.env", ""), DotenvLookup{});
  EXPECT_TRUE(r.entries.empty());
  EXPECT_TRUE(r.errors.empty());
}

}  // namespace
