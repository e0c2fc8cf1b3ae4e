#include "http/server.hpp"

#include <algorithm>
#include <stdexcept>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "http/connection.hpp"
#include "log/log.hpp"
#include "process/sd_notify.hpp"

namespace keel::http {

namespace {
constexpr std::chrono::milliseconds kStepAside{20};  // how often a full worker looks again
}  // namespace
namespace {

thread_local Server* t_server = nullptr;

}  // namespace

class Server::Acceptor final : public runtime::IoHandler {
 public:
  Acceptor(Server& s, int fd, bool admin, bool tls) : server_(s), fd_(fd), admin_(admin), tls_(tls) {}
  void on_io(std::uint32_t) override { server_.on_accept(fd_, admin_, tls_); }
  int fd() const noexcept { return fd_; }
  bool admin() const noexcept { return admin_; }
  // Registers with (or leaves) the loop; idempotent.
  void poll(bool on) {
    if (on == polled_) return;
    polled_ = on;
    // Several workers share one socket: EPOLLEXCLUSIVE wakes one of them, not all.
    if (on)
      server_.loop().add(fd_, EPOLLIN | EPOLLEXCLUSIVE, this);
    else
      server_.loop().remove(fd_);
  }

 private:
  Server& server_;
  int fd_;
  bool admin_;
  bool tls_;
  bool polled_ = false;
};

class Server::SignalWatcher final : public runtime::IoHandler {
 public:
  explicit SignalWatcher(Server& s) : server_(s) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    // HUP reloads the certificates (a single process has no master to start new workers).
    if (server_.tls_ != nullptr) sigaddset(&set, SIGHUP);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd_ >= 0) server_.loop().add(fd_, EPOLLIN, this);
  }
  ~SignalWatcher() {
    if (fd_ >= 0) ::close(fd_);
  }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  void on_io(std::uint32_t) override {
    signalfd_siginfo info{};
    while (::read(fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      if (info.ssi_signo == SIGHUP) {
        server_.reload_certificates();
        continue;
      }
      // TERM: graceful drain; a second TERM, INT or QUIT: stop now. The master marks (sigqueue)
      // the TERM that stops the whole service, as opposed to retiring this one worker.
      const bool graceful = info.ssi_signo == SIGTERM && !server_.shutting_down();
      const bool whole_service = info.ssi_code == SI_QUEUE && info.ssi_int == process::kStopServiceSignalValue;
      // The master died (the parent-death TERM): nobody supervises this worker or tells load
      // balancers anything, so it drains at once instead of serving through --shutdown-delay.
      if (server_.slot_ != nullptr && ::getppid() != server_.master_pid_) server_.orphaned_ = true;
      server_.begin_shutdown(graceful, whole_service);
    }
  }

 private:
  Server& server_;
  int fd_ = -1;
};

Server* Server::current() noexcept {
  return t_server;
}

Server::Server(ServerConfig config, std::vector<net::Listener> listeners, process::WorkerSlot* slot,
               std::uint64_t max_requests)
    : config_(std::move(config)),
      listeners_(std::move(listeners)),
      slot_(slot),
      master_pid_(::getppid()),
      max_requests_(max_requests) {
  parser_limits_.max_request_line = config_.limit_request_line;
  parser_limits_.max_header_field = config_.limit_request_field_size;
  parser_limits_.max_header_count = config_.limit_request_fields;
  parser_limits_.max_header_block = config_.limit_request_header_size;
  parser_limits_.max_body = config_.limit_request_body;
  const auto set = [this](Deadline d, auto dur) {
    lists_[static_cast<std::size_t>(d)].duration = std::chrono::duration_cast<runtime::Clock::duration>(dur);
  };
  set(Deadline::kKeepAlive, config_.keep_alive);
  set(Deadline::kHeader, config_.header_timeout);
  set(Deadline::kBody, config_.body_timeout);
  set(Deadline::kWrite, config_.write_timeout);
  set(Deadline::kHandshake, config_.tls_handshake_timeout);
  set(Deadline::kLinger, std::chrono::seconds(2));
  // While draining, an idle keep-alive connection stays open this long: a client that sends
  // within it is answered with Connection: close (a clean end), instead of racing our close.
  set(Deadline::kDrainIdle, std::min<std::chrono::milliseconds>(config_.keep_alive, std::chrono::seconds(1)));
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (slot_ == nullptr) watchdog_ = process::sd_watchdog_interval();
  ResponseContext ctx;
  ctx.close = true;
  ctx.server = config_.server_header;
  ctx.date = date_.get();
  write_response(over_capacity_, problem_response(503, "too many connections", {}), ctx);
}

Server::~Server() {
  for (ServerConnection* c : all_) delete c;
  for (ServerConnection* c : graveyard_) delete c;
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
  t_server = nullptr;
}

void Server::set_deadline(ServerConnection& c, Deadline kind) {
  unlink(c);
  c.deadline_kind_ = kind;
  if (kind == Deadline::kNone) return;
  DeadlineList& l = lists_[static_cast<std::size_t>(kind)];
  c.deadline_ = loop_.now() + l.duration;
  c.dl_prev_ = l.tail;
  c.dl_next_ = nullptr;
  if (l.tail != nullptr)
    l.tail->dl_next_ = &c;
  else
    l.head = &c;
  l.tail = &c;
}

void Server::unlink(ServerConnection& c) {
  if (c.deadline_kind_ == Deadline::kNone) return;
  DeadlineList& l = lists_[static_cast<std::size_t>(c.deadline_kind_)];
  if (c.dl_prev_ != nullptr)
    c.dl_prev_->dl_next_ = c.dl_next_;
  else
    l.head = c.dl_next_;
  if (c.dl_next_ != nullptr)
    c.dl_next_->dl_prev_ = c.dl_prev_;
  else
    l.tail = c.dl_prev_;
  c.dl_prev_ = c.dl_next_ = nullptr;
  c.deadline_kind_ = Deadline::kNone;
}

namespace {
// Spares kept per worker: enough for the connections that turn busy in one loop iteration; a
// burst beyond it allocates, and what it frees beyond it goes back to malloc.
constexpr std::size_t kMaxSpareBuffers = 64;
constexpr std::size_t kMaxSpareOutput = 64 * 1024;  // larger output strings are not kept
}  // namespace

std::unique_ptr<char[]> Server::take_read_buffer() {
  if (spare_read_buffers_.empty()) return std::make_unique_for_overwrite<char[]>(kReadBufferSize);
  auto b = std::move(spare_read_buffers_.back());
  spare_read_buffers_.pop_back();
  return b;
}

void Server::give_read_buffer(std::unique_ptr<char[]> buffer) {
  if (spare_read_buffers_.size() < kMaxSpareBuffers) spare_read_buffers_.push_back(std::move(buffer));
}

void Server::take_output(std::string& out) {
  if (spare_outputs_.empty()) return;
  out.swap(spare_outputs_.back());
  spare_outputs_.pop_back();
}

void Server::give_output(std::string& out) {
  if (spare_outputs_.size() < kMaxSpareBuffers && out.capacity() <= kMaxSpareOutput) {
    out.clear();
    spare_outputs_.push_back(std::move(out));
  }
  std::string().swap(out);
}

void Server::release(ServerConnection* c) {
  unlink(*c);
  // Swap-remove from the live set; the object itself is freed after this loop iteration, since
  // events for it may still be queued in the current epoll batch.
  ServerConnection* last = all_.back();
  all_[c->all_index_] = last;
  last->all_index_ = c->all_index_;
  all_.pop_back();
  if (c->admin_) {
    --admin_connections_;
  } else {
    --connections_;
    if (slot_ != nullptr) slot_->connections.store(connections_, std::memory_order_relaxed);
  }
  if (observer_ != nullptr) observer_->connection_closed();
  forget_deferred_handshake(c);
  graveyard_.push_back(c);
}

void Server::forget_deferred_handshake(ServerConnection* c) {
  if (auto it = std::find(deferred_handshakes_.begin(), deferred_handshakes_.end(), c);
      it != deferred_handshakes_.end())
    deferred_handshakes_.erase(it);
}

void Server::add_connection(ServerConnection* c) {
  c->all_index_ = all_.size();
  all_.push_back(c);
  if (c->admin_) {
    ++admin_connections_;
  } else {
    ++connections_;
    if (slot_ != nullptr) slot_->connections.store(connections_, std::memory_order_relaxed);
  }
  if (observer_ != nullptr) observer_->connection_opened();
}

void Server::hand_over(ServerConnection& from, std::unique_ptr<ServerConnection> to) {
  unlink(from);
  forget_deferred_handshake(&from);
  ServerConnection* next = to.release();
  next->all_index_ = from.all_index_;
  all_[from.all_index_] = next;
  graveyard_.push_back(&from);
  http2_->start(*next);
}

void Server::request_done() noexcept {
  ++requests_;
  if (slot_ == nullptr) return;
  slot_->requests.store(requests_, std::memory_order_relaxed);
  if (max_requests_ != 0 && requests_ == max_requests_ && slot_->get_state() == process::WorkerState::kReady) {
    // Keep serving: the master starts a replacement and sends SIGTERM once it is ready, so
    // capacity never drops.
    slot_->set_state(process::WorkerState::kRetiring);
    log::write(log::Level::kInfo, "keel.worker", "max_requests_reached", {{"requests", requests_}});
  }
}

bool Server::take_handshake_budget() noexcept {
  if (handshake_budget_ <= 0) return false;
  --handshake_budget_;
  return true;
}

void Server::defer_handshake(Connection* c) {
  deferred_handshakes_.push_back(c);
}

void Server::check_certificates(runtime::Clock::time_point now) {
  if (now < next_certificate_check_) return;
  next_certificate_check_ = now + std::chrono::seconds(1);
  log_certificates(tls_->check());
}

void Server::reload_certificates() {
  if (tls_ != nullptr) log_certificates(tls_->reload());
}

void Server::log_certificates(tls::CertificateStore::Reload outcome) {
  tls::log_outcome(*tls_, outcome);
  if (outcome == tls::CertificateStore::Reload::kReloaded && observer_ != nullptr)
    observer_->tls_contexts_loaded(*tls_->current());
}

runtime::Clock::time_point Server::tick() {
  for (ServerConnection* c : graveyard_) delete c;
  graveyard_.clear();
  date_.refresh();
  const auto now = runtime::Clock::now();
  handshake_budget_ = kHandshakesPerIteration;
  if (!deferred_handshakes_.empty()) {
    // Oldest first, as many as this iteration's budget allows; the rest wait one more.
    std::vector<Connection*> ready;
    ready.swap(deferred_handshakes_);
    std::size_t i = 0;
    for (; i < ready.size() && handshake_budget_ > 0; ++i) {
      ready[i]->handshake_deferred_ = false;
      ready[i]->drive();
    }
    deferred_handshakes_.insert(deferred_handshakes_.begin(), ready.begin() + static_cast<std::ptrdiff_t>(i),
                                ready.end());
  }
  if (tls_ != nullptr) check_certificates(now);
  // The heartbeat: written once per loop iteration, and the loop wakes at least once a second.
  // A handler that blocks the loop stops it, which is what the master's --timeout watches.
  if (slot_ != nullptr)
    slot_->heartbeat_ms.store(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count(),
                              std::memory_order_relaxed);
  runtime::Clock::time_point next = runtime::Clock::time_point::max();
  if (!deferred_handshakes_.empty()) next = now;  // poll without waiting, then the next batch
  if (tls_ != nullptr) next = std::min(next, next_certificate_check_);
  if (watchdog_ && slot_ == nullptr) {  // single process: the event loop itself is the liveness
    if (now >= next_watchdog_) {
      process::sd_notify("WATCHDOG=1");
      next_watchdog_ = now + *watchdog_ / 2;
    }
    next = std::min(next, next_watchdog_);
  }
  for (std::size_t k = 1; k < lists_.size(); ++k) {
    DeadlineList& l = lists_[k];
    while (l.head != nullptr && l.head->deadline_ <= now) {
      ServerConnection* c = l.head;
      unlink(*c);
      c->on_deadline(static_cast<Deadline>(k));
    }
    if (l.head != nullptr) next = std::min(next, l.head->deadline_);
  }
  if (accepting_ && !draining_ && should_step_aside()) pause_accepting(kStepAside);
  if (!accepting_ && !draining_ && !accept_gated_) {
    if (now >= accept_resume_at_ && should_step_aside()) {
      accept_resume_at_ = now + kStepAside;
      next = std::min(next, accept_resume_at_);
    } else if (now >= accept_resume_at_) {
      accepting_ = true;
      for (auto& a : acceptors_) a->poll(true);
    } else {
      next = std::min(next, accept_resume_at_);
    }
  }
  if (shutdown_requested_ && !draining_ && now >= shutdown_at_) begin_shutdown(true, stopping_service_);
  if (listeners_close_at_ != runtime::Clock::time_point{}) {
    if (now >= listeners_close_at_)
      close_listeners();
    else
      next = std::min(next, listeners_close_at_);
  }
  if (shutdown_requested_ && !draining_) next = std::min(next, shutdown_at_);
  if (draining_) {
    if (connections_ == 0 && admin_connections_ == 0 && listeners_closed_) {
      loop_.stop();
    } else if (now >= drain_deadline_) {
      log::write(log::Level::kWarning, "keel.server", "drain_timeout", {{"open_connections", connections_}});
      loop_.stop();
    } else {
      next = std::min(next, drain_deadline_);
    }
  }
  if (observer_ != nullptr) next = std::min(next, observer_->tick(now));
  // Wake at least once a second so the Date header stays fresh.
  return std::min(next, now + std::chrono::seconds(1));
}

// A worker at --worker-connections leaves the shared listener to a sibling that has room: it
// stops polling it (EPOLLEXCLUSIVE would keep waking this one, which could only answer 503).
// It steps aside *before* a wakeup can reach it — once woken, it accepts (a wakeup declined is
// lost: the kernel woke no one else) — and checks again every kStepAside. Only when every worker
// is full do new connections get the 503. (With --reuse-port a connection in this worker's own
// queue can only be taken here, so it never steps aside.)
bool Server::should_step_aside() const noexcept {
  return connections_ >= config_.worker_connections && !config_.reuse_port && sibling_has_room();
}

bool Server::sibling_has_room() const noexcept {
  for (const process::WorkerSlot& s : process::all_worker_slots()) {
    if (&s == slot_ || s.pid.load(std::memory_order_relaxed) == 0) continue;
    const auto state = s.get_state();
    if ((state == process::WorkerState::kReady || state == process::WorkerState::kRetiring) &&
        s.connections.load(std::memory_order_relaxed) < config_.worker_connections)
      return true;
  }
  return false;
}

// Pauses the traffic listeners only: the admin listener (health, metrics) keeps being served
// while traffic is at its caps, so a flood never fails the orchestrator's probes.
void Server::pause_accepting(std::chrono::milliseconds for_how_long) {
  accepting_ = false;
  accept_resume_at_ = loop_.now() + for_how_long;
  for (auto& a : acceptors_)
    if (!a->admin()) a->poll(false);
}

bool Server::on_accept(int listen_fd, bool admin, bool tls) {
  constexpr int kBatch = 64;  // then let the other connections of this loop iteration run
  admin = admin && admin_handler_ != nullptr;
  for (int i = 0; i < kBatch && (accepting_ || admin); ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: spend the reserve one to take the pending connection and close it,
        // so the listener stops reporting readiness (no busy loop) and the client is told at once.
        if (reserve_fd_ >= 0) {
          ::close(reserve_fd_);
          reserve_fd_ = -1;
          const int victim = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (victim >= 0) ::close(victim);
          reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        // Pause accepting briefly either way; connections wait in the backlog meanwhile.
        pause_accepting(std::chrono::milliseconds(100));
        static runtime::Clock::time_point last_warning{};
        if (loop_.now() - last_warning > std::chrono::seconds(5)) {
          last_warning = loop_.now();
          log::write(log::Level::kWarning, "keel.server", "accept_failed",
                     {{"error", std::strerror(errno)}, {"open_connections", connections_}});
        }
        return false;
      }
      return false;
    }
    if (admin ? admin_connections_ >= kAdminConnections : connections_ >= config_.worker_connections) {
      // Over --worker-connections (or the admin cap): an explicit, cheap answer, then close.
      if (observer_ != nullptr) observer_->rejected(Rejection::kConnectionLimit);
      if (!tls) {  // a TLS client would read plaintext as a broken handshake: it just sees the close
        [[maybe_unused]] const ssize_t n = ::send(fd, over_capacity_.data(), over_capacity_.size(), MSG_NOSIGNAL);
      }
      ::shutdown(fd, SHUT_WR);
      ::close(fd);
      continue;
    }
    const int one = 1;
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::unique_ptr<tls::Session> session;
    if (tls && tls_ != nullptr) {
      session = std::make_unique<tls::Session>(tls_->current(), fd);
      if (!session->valid()) {  // out of memory in OpenSSL: refuse this one, keep serving
        ::close(fd);
        continue;
      }
    }
    auto* c = new Connection(*this, admin ? *admin_handler_ : *handler_, fd, net::format_address(ss), admin,
                             std::move(session));
    add_connection(c);
    c->start();
    if (!admin && should_step_aside()) {
      pause_accepting(kStepAside);
      return false;
    }
  }
  return accepting_ || admin;
}

namespace {
// A classic BPF socket filter that drops TCP segments with SYN set and ACK clear: new connection
// attempts stop reaching the listener (their SYNs are retransmitted, and refused once it is
// closed), while handshakes already under way complete and wait in the backlog to be accepted.
void refuse_new_connections(int fd) {
  static sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),           // TCP flags byte
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),        // SYN | ACK
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),  // SYN alone: a new connection
      BPF_STMT(BPF_RET | BPF_K, 0),                     // drop
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffU),           // keep
  };
  const sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  ::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}
}  // namespace

void Server::close_listeners() {
  listeners_close_at_ = {};
  // The last look at the backlog: everything that reached us is accepted and served.
  for (const auto& l : listeners_)
    if (accepting_ || l.admin)
      while (l.fd >= 0 && on_accept(l.fd, l.admin, l.tls && !l.admin)) {
      }
  for (auto& a : acceptors_) a->poll(false);
  accepting_ = false;
  for (auto& l : listeners_) {
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
  }
  listeners_closed_ = true;
}

void Server::begin_shutdown(bool graceful, bool whole_service) {
  // Without a master this process is the whole service.
  stopping_service_ = whole_service || slot_ == nullptr;
  if (graceful && !shutdown_requested_ && !draining_ && config_.shutdown_delay.count() > 0 && !orphaned_) {
    // Load balancers need time to notice the failing readiness and stop sending: keep serving
    // normally until then (tick() starts the drain).
    shutdown_requested_ = true;
    shutdown_at_ = loop_.now() + config_.shutdown_delay;
    log::write(log::Level::kInfo, "keel.server", "shutdown_delay",
               {{"delay_ms", static_cast<std::int64_t>(config_.shutdown_delay.count())}});
    return;
  }
  shutdown_requested_ = true;
  if (!draining_) {
    log::write(log::Level::kInfo, "keel.server", graceful ? "graceful_shutdown" : "fast_shutdown",
               {{"open_connections", connections_}});
    if (slot_ == nullptr) process::sd_notify("STOPPING=1");
    if (slot_ != nullptr) slot_->set_state(process::WorkerState::kDraining);
  }
  if (!graceful) {
    stopped_fast_ = true;
    close_listeners();
    loop_.stop();
    return;
  }
  // A socket closed for good resets the connections in its queue: the whole service's sockets,
  // or a retiring worker's own SO_REUSEPORT ones (a shared socket lives on in the siblings, so
  // closing this worker's copy loses nothing). Those stop taking new connections first (their
  // SYNs are retried and land on a socket that stays), and are accepted from briefly so that
  // handshakes already under way are served.
  bool refused = false;
  if (accepting_ && !draining_) {
    for (const auto& l : listeners_) {
      const bool tcp = l.bound.kind == net::BindAddress::Kind::kTcp || l.bound.kind == net::BindAddress::Kind::kFd;
      if (l.fd >= 0 && tcp && (stopping_service_ || l.exclusive)) {
        refuse_new_connections(l.fd);
        refused = true;
      }
    }
  }
  if (refused)
    listeners_close_at_ = loop_.now() + std::chrono::milliseconds(100);
  else if (!draining_)
    close_listeners();
  draining_ = true;
  drain_deadline_ = loop_.now() + config_.graceful_timeout;
  // Copy: drain() may release connections, which edits all_.
  const std::vector<ServerConnection*> live = all_;
  for (ServerConnection* c : live) c->drain();
}

void Server::start_accepting(std::vector<net::Listener> more) {
  if (!accept_gated_ || shutdown_requested_ || draining_ || listeners_closed_) {
    for (auto& l : more) ::close(l.fd);
    return;
  }
  for (auto& l : more) {
    acceptors_.push_back(std::make_unique<Acceptor>(*this, l.fd, l.admin, l.tls && !l.admin));
    listeners_.push_back(std::move(l));
  }
  accept_gated_ = false;
  accepting_ = true;
  for (auto& a : acceptors_) a->poll(true);
  if (slot_ != nullptr && slot_->get_state() == process::WorkerState::kBooting)
    slot_->set_state(process::WorkerState::kReady);
}

int Server::run() {
  if (handler_ == nullptr) throw std::logic_error("http::Server::run() without a request handler");
  t_server = this;
  signals_ = std::make_unique<SignalWatcher>(*this);
  for (const auto& l : listeners_)
    acceptors_.push_back(std::make_unique<Acceptor>(*this, l.fd, l.admin, l.tls && !l.admin));
  loop_.set_tick([this] { return tick(); });
  if (accept_gated_) {
    accepting_ = false;
  } else {
    accept_gated_ = true;
    start_accepting();
  }
  if (slot_ == nullptr) process::sd_notify("READY=1\nSTATUS=serving");  // no master to say it
  loop_.run();
  return 0;
}

}  // namespace keel::http
