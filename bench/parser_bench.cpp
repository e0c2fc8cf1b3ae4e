// Micro-benchmarks of the HTTP/1.1 request parser, used the way a connection uses it: one parser
// per connection, reset() between requests (vectors keep their capacity), the request bytes parsed
// in place. Chunked bodies are decoded in place, so the chunked case copies the request into the
// buffer on every iteration (BM_Memcpy_ChunkedPost shows what that copy costs on its own).
//   build/release/bench/keel_parser_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "http/request_parser.hpp"

namespace {

using keel::http::ParseStatus;
using keel::http::RequestParser;

// What `wrk -t1 -c64 http://127.0.0.1:18090/plaintext` sends.
constexpr std::string_view kWrkGet = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:18090\r\n\r\n";

// A browser navigation: 12 header fields, ~500 bytes.
constexpr std::string_view kBrowserGet =
    "GET /api/users?limit=20&offset=40 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/index.html\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "If-None-Match: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n"
    "\r\n";

// A JSON upload in three chunks, with a chunk extension and a trailer.
constexpr std::string_view kChunkedPost =
    "POST /api/users HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "Content-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "19\r\n{\"name\":\"Ada Lovelace\",\"e\r\n"
    "1c;part=2\r\nmail\":\"ada@example.com\",\"age\r\n"
    "4\r\n\":36\r\n"
    "1\r\n}\r\n"
    "0\r\n"
    "X-Checksum: 5d41402abc4b2a76b9719d911017c592\r\n"
    "\r\n";

constexpr int kPipelineDepth = 16;

void expect_complete(RequestParser& parser, char* data, std::size_t len, benchmark::State& state) {
  if (parser.parse(data, len) != ParseStatus::kComplete) {
    state.SkipWithError("request did not parse");
    std::abort();  // the benchmark numbers would be meaningless
  }
}

void run_single(benchmark::State& state, std::string_view request) {
  std::string buf(request);
  RequestParser parser;
  for (auto _ : state) {
    expect_complete(parser, buf.data(), buf.size(), state);
    benchmark::DoNotOptimize(parser.request().path.data());
    parser.reset();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(request.size()));
}

void BM_Parse_WrkGet(benchmark::State& state) {
  run_single(state, kWrkGet);
}
void BM_Parse_BrowserGet(benchmark::State& state) {
  run_single(state, kBrowserGet);
}

// 16 pipelined requests in one buffer, peeled off one after another as the connection does.
void BM_Parse_Pipelined16(benchmark::State& state) {
  std::string buf;
  for (int i = 0; i < kPipelineDepth; ++i) buf += kWrkGet;
  RequestParser parser;
  for (auto _ : state) {
    std::size_t off = 0;
    for (int i = 0; i < kPipelineDepth; ++i) {
      expect_complete(parser, buf.data() + off, buf.size() - off, state);
      benchmark::DoNotOptimize(parser.request().path.data());
      off += parser.consumed();
      parser.reset();
    }
  }
  state.SetItemsProcessed(state.iterations() * kPipelineDepth);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(buf.size()));
}

void BM_Parse_ChunkedPost(benchmark::State& state) {
  std::vector<char> buf(kChunkedPost.size());
  RequestParser parser;
  for (auto _ : state) {
    std::memcpy(buf.data(), kChunkedPost.data(), kChunkedPost.size());  // decoding is in place
    expect_complete(parser, buf.data(), buf.size(), state);
    benchmark::DoNotOptimize(parser.request().body.data());
    parser.reset();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kChunkedPost.size()));
}

void BM_Memcpy_ChunkedPost(benchmark::State& state) {
  std::vector<char> buf(kChunkedPost.size());
  for (auto _ : state) {
    std::memcpy(buf.data(), kChunkedPost.data(), kChunkedPost.size());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

// The browser request arriving in two reads (the head split mid-header), the buffer moving in
// between as when the connection's read buffer grows.
void BM_Parse_BrowserGetTwoReads(benchmark::State& state) {
  const std::size_t split = kBrowserGet.size() / 2;
  std::vector<char> first(kBrowserGet.begin(), kBrowserGet.end());
  std::vector<char> second(kBrowserGet.begin(), kBrowserGet.end());
  RequestParser parser;
  for (auto _ : state) {
    if (parser.parse(first.data(), split) != ParseStatus::kIncomplete) state.SkipWithError("unexpected status");
    expect_complete(parser, second.data(), second.size(), state);
    benchmark::DoNotOptimize(parser.request().path.data());
    parser.reset();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kBrowserGet.size()));
}

}  // namespace

BENCHMARK(BM_Parse_WrkGet);
BENCHMARK(BM_Parse_BrowserGet);
BENCHMARK(BM_Parse_BrowserGetTwoReads);
BENCHMARK(BM_Parse_Pipelined16);
BENCHMARK(BM_Parse_ChunkedPost);
BENCHMARK(BM_Memcpy_ChunkedPost);

BENCHMARK_MAIN();
