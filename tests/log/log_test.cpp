// The asynchronous logger: every line is valid JSON whatever bytes it carries, the request context
// appears on lines, a full buffer drops and counts (then says so once), a failing destination never
// blocks, the file rotates and old files are deleted, and a forked child logs without deadlocking.
#include "log/log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using keel::log::Level;

class LogTest : public ::testing::Test {
 protected:
  fs::path dir;
  fs::path file;
  void SetUp() override {
    dir = fs::temp_directory_path() / ("keel-log-test-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    file = dir / "app.log";
    configure({});
  }
  void TearDown() override {
    keel::log::flush();
    keel::log::configure({});  // back to stdout
    fs::remove_all(dir);
  }
  void configure(keel::log::Options o) {
    o.file = file.string();
    keel::log::configure(o);
  }
  std::vector<nlohmann::json> lines() {
    keel::log::flush();
    std::ifstream in(file);
    std::vector<nlohmann::json> out;
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));  // throws if invalid
    return out;
  }
};

TEST_F(LogTest, HostileBytesStillMakeValidJsonLines) {
  std::string hostile;
  for (int c = 0; c < 256; ++c) hostile += static_cast<char>(c);
  hostile += "\xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80 \"quoted\" \\back\\ \n\r\t";
  keel::log::write(Level::kError, "test\x01", std::string("ev\"ent\n") + hostile, {{hostile, hostile}, {"n", 1}});
  const auto ls = lines();
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0]["level"], "error");
  EXPECT_EQ(ls[0]["n"], 1);
  // Invalid UTF-8 became U+FFFD, control characters escapes: the value round-trips as valid text.
  const std::string v = ls[0][ls[0].items().begin().key()].dump();
  EXPECT_FALSE(v.empty());
}

TEST_F(LogTest, RequiredFieldsAndTimestamp) {
  keel::log::write(Level::kInfo, "keel.test", "something_happened", {{"d", 0.5}, {"b", true}});
  const auto ls = lines();
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0]["event"], "something_happened");
  EXPECT_EQ(ls[0]["logger"], "keel.test");
  EXPECT_EQ(ls[0]["pid"], ::getpid());
  EXPECT_EQ(ls[0]["b"], true);
  const std::string ts = ls[0]["ts"];
  EXPECT_EQ(ts.size(), 27u) << ts;  // 2026-11-27T00:00:00.000000Z
  EXPECT_EQ(ts.back(), 'Z');
}

TEST_F(LogTest, ContextFieldsAppearOnEveryLineInItsScope) {
  keel::log::Context ctx;
  ctx.request_id = "req-1";
  ctx.trace_id = std::string(32, 'a');
  ctx.span_id = std::string(16, 'b');
  ctx.fields = {{"route", "/x/{id}"}, {"client_ip", "127.0.0.1"}};
  {
    keel::log::ScopedContext scoped(&ctx);
    keel::log::write(Level::kInfo, "app", "inside");
  }
  keel::log::write(Level::kInfo, "app", "outside");
  const auto ls = lines();
  ASSERT_EQ(ls.size(), 2u);
  EXPECT_EQ(ls[0]["request_id"], "req-1");
  EXPECT_EQ(ls[0]["trace_id"], std::string(32, 'a'));
  EXPECT_EQ(ls[0]["span_id"], std::string(16, 'b'));
  EXPECT_EQ(ls[0]["route"], "/x/{id}");
  EXPECT_FALSE(ls[1].contains("request_id"));
}

// The top-level keys of one JSON line, in order, duplicates kept (nlohmann keeps only the last).
std::vector<std::string> top_level_keys(const std::string& line) {
  std::vector<std::string> keys;
  const nlohmann::json parsed_line =
      nlohmann::json::parse(line, [&keys](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        if (event == nlohmann::json::parse_event_t::key && depth == 1) keys.push_back(parsed.get<std::string>());
        return true;
      });
  EXPECT_TRUE(parsed_line.is_object());
  return keys;
}

TEST_F(LogTest, AFieldOfTheCallReplacesTheContextsFieldOfThatName) {
  keel::log::Context ctx;
  ctx.request_id = "req-1";
  ctx.trace_id = std::string(32, 'a');
  ctx.span_id = std::string(16, 'b');
  ctx.fields = {{"route", "/x/{id}"}, {"tenant", "a"}, {"client_ip", "127.0.0.1"}, {"tenant", "b"}};
  {
    keel::log::ScopedContext scoped(&ctx);
    // handler_exception names the route and request id itself; the context carries them too.
    keel::log::write(Level::kError, "keel.http", "handler_exception",
                     {{"route", "/x/{id}"}, {"request_id", "req-1"}, {"error", "boom"}});
  }
  keel::log::flush();
  std::ifstream in(file);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  std::vector<std::string> keys = top_level_keys(line);
  for (const char* key : {"route", "request_id", "tenant", "trace_id", "client_ip", "error"})
    EXPECT_EQ(std::count(keys.begin(), keys.end(), key), 1) << key << " in " << line;
  const auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["tenant"], "b");  // the later binding wins
  EXPECT_EQ(parsed["request_id"], "req-1");
  EXPECT_EQ(parsed["route"], "/x/{id}");
}

TEST_F(LogTest, LevelsGlobalAndPerLogger) {
  configure({.level = Level::kWarning, .logger_levels = {{"keel.http", Level::kDebug}}});
  keel::log::write(Level::kInfo, "app", "dropped_by_level");
  keel::log::write(Level::kDebug, "keel.http.conn", "kept_by_logger_level");
  keel::log::write(Level::kError, "app", "kept");
  const auto ls = lines();
  ASSERT_EQ(ls.size(), 2u);
  EXPECT_EQ(ls[0]["event"], "kept_by_logger_level");
  EXPECT_EQ(ls[1]["event"], "kept");
  EXPECT_FALSE(keel::log::enabled(Level::kInfo, "keel.httpx"));  // a prefix only at a dot
}

TEST_F(LogTest, AFullBufferDropsCountsAndReportsOnce) {
  // A pipe nobody reads: the writer blocks on it, the buffer fills, lines are dropped.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ::fcntl(p[1], F_SETPIPE_SZ, 4096);
  const int saved = ::dup(STDOUT_FILENO);
  ::dup2(p[1], STDOUT_FILENO);
  keel::log::configure({.buffer_bytes = 8192});
  const std::uint64_t before = keel::log::dropped_total();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000; ++i) keel::log::write(Level::kInfo, "app", "flood", {{"i", i}});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << "writing must never block";
  EXPECT_GT(keel::log::dropped_total() - before, 1000u);
  // Drain the pipe: space returns, and one summary line tells what was lost.
  std::string got;
  char buf[65536];
  ::fcntl(p[0], F_SETFL, O_NONBLOCK);
  for (int round = 0; round < 50 && got.find("log_lines_dropped") == std::string::npos; ++round) {
    const ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
    keel::log::write(Level::kInfo, "app", "after");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ::close(p[0]);
  ::close(p[1]);
  keel::log::configure({});
  EXPECT_NE(got.find("\"event\":\"log_lines_dropped\""), std::string::npos);
}

TEST_F(LogTest, ADiskFullDestinationNeverStallsAndCountsLosses) {
  keel::log::Options o;
  o.file = "/dev/full";
  keel::log::configure(o);
  const std::uint64_t before = keel::log::dropped_total();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) keel::log::write(Level::kInfo, "app", "to_dev_full");
  keel::log::flush();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  EXPECT_GE(keel::log::dropped_total() - before, 100u);
}

TEST_F(LogTest, RotatesBySizeAndKeepsMaxFiles) {
  configure({.max_bytes = 2000, .max_files = 2});
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 30; ++i) keel::log::write(Level::kInfo, "app", "fill", {{"i", i}});
    keel::log::flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // maintenance runs once a second
  }
  std::size_t rotated = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("app.log.", 0) == 0) ++rotated;
  EXPECT_EQ(rotated, 2u);
  EXPECT_TRUE(fs::exists(file));
}

TEST_F(LogTest, AForkedChildLogsWithoutDeadlock) {
  // The parent's writer thread is waiting on its condition variable when fork() copies it.
  keel::log::write(Level::kInfo, "app", "parent_before_fork");
  keel::log::flush();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(5);  // a deadlock kills the child with SIGALRM
    // Several wake-ups of the child's own writer while it waits (each write signals it).
    for (int i = 0; i < 200; ++i) {
      keel::log::write(Level::kInfo, "app", "child", {{"i", i}});
      if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    keel::log::flush();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  const auto ls = lines();
  std::size_t child = 0;
  for (const auto& l : ls) child += l["event"] == "child" ? 1 : 0;
  EXPECT_EQ(child, 200u);
}

}  // namespace
