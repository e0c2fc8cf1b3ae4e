// `<binary> healthcheck`: a container HEALTHCHECK with no curl in the image. Connects to the
// service's own listener (the admin listener when there is one, else the first --bind address;
// 0.0.0.0 / [::] mean loopback) or --url, asks the liveness path, and exits 0 on a 2xx answer, 1
// otherwise, within a timeout. A --bind listener that speaks TLS (certfile set) is asked over
// https without verifying its certificate: the probe checks that this process answers, and the
// certificate names the service's public host, not loopback. The request goes
// through keel's libcurl wrapper (client/curl_easy.hpp), which the core library links anyway;
// never through a proxy.
#include "app/healthcheck.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "client/curl_easy.hpp"
#include "net/listener.hpp"

namespace keel::app {
namespace {

// The URL that reaches target: loopback for a wildcard address, "localhost" (never resolved:
// CURLOPT_UNIX_SOCKET_PATH) for a unix socket.
std::string url_for(const net::BindAddress& target, const std::string& path, bool tls) {
  const std::string scheme = tls ? "https://" : "http://";
  if (target.kind == net::BindAddress::Kind::kUnix) return scheme + "localhost" + path;
  std::string host = target.host;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return scheme + host + ":" + std::to_string(target.port) + path;
}

}  // namespace

int healthcheck(const ServerOptions& options, const std::string& url) {
  constexpr std::chrono::milliseconds kTimeout{2000};
  net::BindAddress target;
  bool tls = false;
  std::string path = options.health_path.empty() ? "/" : options.health_path;
  try {
    if (!url.empty()) {
      // http(s)://HOST:PORT/PATH (or unix:/path/to.sock — then the liveness path)
      std::string rest = url;
      tls = rest.rfind("https://", 0) == 0;
      if (tls || rest.rfind("http://", 0) == 0) {
        rest = rest.substr(tls ? 8 : 7);
        const auto slash = rest.find('/');
        if (slash != std::string::npos) {
          path = rest.substr(slash);
          rest = rest.substr(0, slash);
        }
      }
      target = net::parse_bind(rest);
    } else if (!options.metrics_bind.empty()) {
      target = net::parse_bind(options.metrics_bind);  // plaintext, and it serves the health paths
    } else {
      if (options.bind.empty()) throw std::invalid_argument("no --bind address");
      target = net::parse_bind(options.bind.front());
      tls = !options.certfile.empty();
    }
    if (target.kind == net::BindAddress::Kind::kFd)
      throw std::invalid_argument("an fd:// address names no socket to connect to: give --url");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "healthcheck: %s\n", e.what());
    return 1;
  }
  try {
    client::Easy easy;
    easy.setopt(CURLOPT_URL, url_for(target, path, tls).c_str());
    if (tls) {
      easy.setopt(CURLOPT_SSL_VERIFYPEER, 0L);
      easy.setopt(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (target.kind == net::BindAddress::Kind::kUnix) easy.setopt(CURLOPT_UNIX_SOCKET_PATH, target.path.c_str());
    easy.setopt(CURLOPT_NOPROXY, "*");  // the service itself, whatever http_proxy says
    easy.setopt(CURLOPT_TIMEOUT_MS, static_cast<long>(kTimeout.count()));
    easy.setopt(CURLOPT_FOLLOWLOCATION, 0L);
    const client::Response& r = easy.perform();
    if (r.result == CURLE_COULDNT_CONNECT) {
      std::fprintf(stderr, "healthcheck: cannot connect: %s\n",
                   r.os_errno != 0 ? std::strerror(static_cast<int>(r.os_errno)) : r.error.c_str());
      return 1;
    }
    if (r.result != CURLE_OK) {
      std::fprintf(stderr, "healthcheck: %s: %s\n", path.c_str(), r.error.c_str());
      return 1;
    }
    if (r.status >= 200 && r.status <= 299) return 0;
    std::fprintf(stderr, "healthcheck: %s answered '%s'\n", path.c_str(), r.status_line.c_str());
  } catch (const std::exception& e) {  // libcurl could not start
    std::fprintf(stderr, "healthcheck: %s\n", e.what());
  }
  return 1;
}

}  // namespace keel::app
