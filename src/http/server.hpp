// The HTTP server of one worker process: accepts on inherited listeners, owns the connections,
// their deadline lists and the Date cache, and drains on SIGTERM. What a request means is the
// RequestHandler's business (http/handler.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/handler.hpp"
#include "http/observer.hpp"
#include "http/request_parser.hpp"
#include "http/response_writer.hpp"
#include "http/server_config.hpp"
#include "net/listener.hpp"
#include "process/worker_table.hpp"
#include "runtime/event_loop.hpp"
#include "tls/context.hpp"
#include "tls/session.hpp"

namespace keel::http {

class Connection;
class Server;

// Deadline kinds. Every connection is in at most one list; each list has one fixed duration,
// so appending at the tail keeps it sorted and all operations are O(1).
enum class Deadline : std::uint8_t {
  kNone,
  kKeepAlive,
  kHeader,
  kBody,
  kWrite,
  kLinger,
  kDrainIdle,
  kHandshake,
  kCount
};

// What the server holds of every accepted connection, whatever protocol it speaks: its place in
// the deadline lists and in the live set (drain), and whether it came from the admin listener.
// HTTP/1 (http::Connection) accepts every connection; one that turns out to speak HTTP/2 is
// handed over (Handover) to the protocol's own connection class, which takes its place here.
class ServerConnection : public runtime::IoHandler {
 public:
  virtual ~ServerConnection() = default;
  ServerConnection(const ServerConnection&) = delete;
  ServerConnection& operator=(const ServerConnection&) = delete;
  virtual void on_deadline(Deadline kind) = 0;
  // Graceful shutdown: finish what is in flight, take nothing new, then close.
  virtual void drain() = 0;
  [[nodiscard]] bool admin() const noexcept { return admin_; }
  // The deadline list the connection is in (kNone: none). Public for harnesses that expire it as
  // the server's loop would (the HTTP/2 fuzz target).
  [[nodiscard]] Deadline deadline_kind() const noexcept { return deadline_kind_; }

 protected:
  explicit ServerConnection(bool admin) noexcept : admin_(admin) {}

 private:
  friend class Server;
  bool admin_;
  // Deadline list links (owned by Server).
  Deadline deadline_kind_ = Deadline::kNone;
  runtime::Clock::time_point deadline_{};
  ServerConnection* dl_prev_ = nullptr;
  ServerConnection* dl_next_ = nullptr;
  std::size_t all_index_ = 0;
};

// A connection's transport as HTTP/1 hands it to the protocol the client turned out to speak:
// HTTP/2 with prior knowledge (the preface instead of a request line) or by ALPN "h2".
struct Handover {
  RequestHandler* handler = nullptr;  // the listener's (traffic or admin)
  int fd = -1;
  bool admin = false;                  // accepted on the admin listener
  std::string peer;                    // "ip:port" (the PROXY protocol's source when it was used)
  bool proxy_headers_trusted = false;  // the peer is in --forwarded-allow-ips
  std::unique_ptr<tls::Session> tls;   // null: plaintext
  std::string_view received;           // bytes read and not consumed (the preface, frames after it)
};

// Makes the connection that continues a handed-over one (the http2 module's factory, set by the
// composition root, so that http does not depend on the protocols above it).
class ProtocolFactory {
 public:
  virtual ~ProtocolFactory() = default;
  // The new connection, not started yet; `received` must be copied before this returns.
  virtual std::unique_ptr<ServerConnection> adopt(Server& server, Handover&& handover) = 0;
  virtual void start(ServerConnection& connection) = 0;
};

class Server {
 public:
  // slot: this worker's entry in the master's table (heartbeat, requests, state), or nullptr
  // when running without a master. max_requests: recycle after this many (0: never).
  Server(ServerConfig config, std::vector<net::Listener> listeners, process::WorkerSlot* slot = nullptr,
         std::uint64_t max_requests = 0);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until shutdown; returns the process exit code.
  int run();
  // Before run(): do not accept (nor report the worker ready to the master) until
  // start_accepting() — a new generation of an upgrade waits for its readiness checks, so a
  // worker that cannot serve never takes a connection.
  void gate_accepting() noexcept { accept_gated_ = true; }
  // Opens the gate, adding `more` listeners (no-op once shutting down, or when not gated).
  void start_accepting(std::vector<net::Listener> more = {});

  // Who answers the requests of the traffic listeners, and of the admin listener (metrics,
  // health; null: its connections are not accepted). Set before run(); they outlive the server.
  void set_handler(RequestHandler* handler) noexcept { handler_ = handler; }
  void set_admin_handler(RequestHandler* handler) noexcept { admin_handler_ = handler; }
  // TLS for the listeners marked tls (the traffic listeners when certfile/keyfile are set); the
  // server checks the store's files once a second and reloads them when they change, and on
  // reload_certificates(). Set before run(); it outlives the server.
  void set_tls(tls::CertificateStore* store) noexcept { tls_ = store; }
  // HTTP/2 (null: off): connections that start with the HTTP/2 preface, or whose TLS handshake
  // chose "h2", are handed to it. Set before run(); it outlives the server.
  void set_http2(ProtocolFactory* factory) noexcept { http2_ = factory; }
  [[nodiscard]] ProtocolFactory* http2() const noexcept { return http2_; }
  // Takes ownership of an accepted connection (live set, counts, observer), before it starts.
  // Public for harnesses that run a connection without a listener (the HTTP/2 fuzz target).
  void add_connection(ServerConnection* c);
  // `from` gives its transport to `to`, which takes its place (deadlines off, counted as the
  // same connection); `from` is freed after this loop iteration, `to` is started.
  void hand_over(ServerConnection& from, std::unique_ptr<ServerConnection> to);
  // Loads the certificates again now (SIGHUP in a single process); logs the outcome.
  void reload_certificates();

  // Server-wide state the connections use.
  const ServerConfig& config() const noexcept { return config_; }
  runtime::EventLoop& loop() noexcept { return loop_; }
  const DateCache& date() const noexcept { return date_; }
  bool draining() const noexcept { return draining_; }
  // From SIGTERM on (including --shutdown-delay): readiness must report not ready.
  bool shutting_down() const noexcept { return shutdown_requested_ || draining_; }
  // SIGINT, SIGQUIT or a second SIGTERM stopped the loop: whatever follows must not wait.
  bool stopped_fast() const noexcept { return stopped_fast_; }
  const ParserLimits& parser_limits() const noexcept { return parser_limits_; }
  // Metrics / access logs; null: none. Set before run().
  void set_observer(Observer* observer) noexcept { observer_ = observer; }
  Observer* observer() const noexcept { return observer_; }

  void set_deadline(ServerConnection& c, Deadline kind);
  // Counts a finished request; asks the master for a replacement at --max-requests.
  void request_done() noexcept;
  // Called by a connection when it is finished; freed after the current loop iteration.
  void release(ServerConnection* c);

  // The server of the calling thread (its worker).
  static Server* current() noexcept;

  // Buffers are lent to connections only while they have bytes to hold: an idle keep-alive
  // connection keeps none. Spare ones of the standard sizes are recycled here, so a connection
  // that becomes busy again takes one without a malloc.
  static constexpr std::size_t kReadBufferSize = 8 * 1024;
  std::unique_ptr<char[]> take_read_buffer();
  void give_read_buffer(std::unique_ptr<char[]> buffer);
  void take_output(std::string& out);
  void give_output(std::string& out);
  // Bytes of read buffers the connections hold now (the --request-buffer-budget account).
  std::size_t& buffered_request_bytes() noexcept { return buffered_request_bytes_; }
  // TLS handshake steps this loop iteration may still run; a connection refused waits in
  // defer_handshake() for the next iteration.
  bool take_handshake_budget() noexcept;
  void defer_handshake(Connection* c);
  static constexpr int kHandshakesPerIteration = 16;

 private:
  class Acceptor;
  class SignalWatcher;
  struct DeadlineList {
    ServerConnection* head = nullptr;
    ServerConnection* tail = nullptr;
    runtime::Clock::duration duration{};
  };

  runtime::Clock::time_point tick();
  // Accepts up to a batch of pending connections; true when the batch filled (more may wait).
  bool on_accept(int listen_fd, bool admin, bool tls);
  void check_certificates(runtime::Clock::time_point now);
  void log_certificates(tls::CertificateStore::Reload outcome);
  // whole_service: the master stops everything (the listening sockets close for good), as
  // opposed to this worker retiring while the others keep accepting.
  void begin_shutdown(bool graceful, bool whole_service);
  void close_listeners();
  // Stops polling the listeners until `for_how_long` has passed (tick() resumes).
  void pause_accepting(std::chrono::milliseconds for_how_long);
  // Another ready worker of this master is below --worker-connections.
  bool sibling_has_room() const noexcept;
  bool should_step_aside() const noexcept;
  void unlink(ServerConnection& c);
  void forget_deferred_handshake(ServerConnection* c);

  const ServerConfig config_;
  RequestHandler* handler_ = nullptr;
  RequestHandler* admin_handler_ = nullptr;
  ParserLimits parser_limits_;
  runtime::EventLoop loop_;
  DateCache date_;
  std::vector<net::Listener> listeners_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::unique_ptr<SignalWatcher> signals_;
  std::array<DeadlineList, static_cast<std::size_t>(Deadline::kCount)> lists_{};
  std::vector<ServerConnection*> graveyard_;
  std::vector<std::unique_ptr<char[]>> spare_read_buffers_;
  std::vector<std::string> spare_outputs_;
  std::size_t buffered_request_bytes_ = 0;
  std::size_t connections_ = 0;        // traffic connections (--worker-connections)
  std::size_t admin_connections_ = 0;  // admin listener connections, capped apart
  // Admin connections per worker: probes and scrapes need a handful; the cap only bounds abuse
  // of a port that should not be reachable from outside anyway.
  static constexpr std::size_t kAdminConnections = 32;
  int reserve_fd_ = -1;
  std::string over_capacity_;  // canned 503 for connections over --worker-connections
  bool accepting_ = true;
  bool accept_gated_ = false;
  runtime::Clock::time_point accept_resume_at_{};
  bool draining_ = false;
  bool shutdown_requested_ = false;  // SIGTERM seen; draining starts after --shutdown-delay
  bool stopping_service_ = false;    // the whole service stops (not just this worker)
  bool listeners_closed_ = false;
  runtime::Clock::time_point listeners_close_at_{};  // final backlog drain, then close
  runtime::Clock::time_point shutdown_at_{};
  runtime::Clock::time_point drain_deadline_{};
  bool stopped_fast_ = false;
  std::vector<ServerConnection*> all_;  // every live connection (for drain)
  process::WorkerSlot* slot_ = nullptr;
  pid_t master_pid_ = 0;  // the parent at start: another parent means the master died
  bool orphaned_ = false;
  Observer* observer_ = nullptr;
  tls::CertificateStore* tls_ = nullptr;
  ProtocolFactory* http2_ = nullptr;
  runtime::Clock::time_point next_certificate_check_{};
  int handshake_budget_ = kHandshakesPerIteration;
  std::vector<Connection*> deferred_handshakes_;
  std::uint64_t max_requests_ = 0;
  std::uint64_t requests_ = 0;
  std::optional<std::chrono::milliseconds> watchdog_;  // systemd WatchdogSec, single process only
  runtime::Clock::time_point next_watchdog_{};
  friend class Connection;
};

}  // namespace keel::http
