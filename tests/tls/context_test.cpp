// The TLS module without a server: certificate loading and its errors, SNI choice, the store's
// reload rules, and a session ticket from one worker's contexts resuming on another's (two
// independently loaded sets sharing only the ticket secret, over a socketpair).
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tls/context.hpp"
#include "tls/session.hpp"
#include "tls/tickets.hpp"

namespace keel::tls {
namespace {

namespace fs = std::filesystem;

// A self-signed ECDSA P-256 certificate for the given DNS names, written as PEM files.
struct Pair {
  std::string cert, key;
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/keel-tls-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  Pair issue(const std::string& stem, const std::string& cn, const std::string& sans) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), ++serial_);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (!sans.empty()) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, sans.c_str());
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    }
    X509_sign(x, key, EVP_sha256());
    Pair p{dir_ + "/" + stem + ".pem", dir_ + "/" + stem + ".key"};
    BIO* out = BIO_new_file(p.cert.c_str(), "w");
    PEM_write_bio_X509(out, x);
    BIO_free(out);
    out = BIO_new_file(p.key.c_str(), "w");
    PEM_write_bio_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
    BIO_free(out);
    X509_free(x);
    EVP_PKEY_free(key);
    return p;
  }

  static Config config_of(const std::vector<Pair>& pairs) {
    Config c;
    for (const Pair& p : pairs) c.certificates.push_back({p.cert, p.key});
    return c;
  }

  std::string dir_;
  long serial_ = 0;
};

TEST_F(TlsTest, LoadsNamesAndExpiry) {
  const Pair p = issue("a", "Service.Example", "DNS:service.example,DNS:*.api.example");
  const auto set = Contexts::load(config_of({p}));
  ASSERT_EQ(set->certificates().size(), 1u);
  const Certificate& c = set->certificates()[0];
  EXPECT_EQ(c.name, "service.example");
  EXPECT_EQ(c.names, (std::vector<std::string>{"service.example", "*.api.example"}));
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(static_cast<double>(c.not_after), static_cast<double>(now + 86400), 60);
}

TEST_F(TlsTest, SniChoosesByExactNameThenOneLabelWildcard) {
  const Pair a = issue("a", "a.example", "DNS:a.example");
  const Pair b = issue("b", "b.example", "DNS:b.example,DNS:*.wild.example");
  const auto set = Contexts::load(config_of({a, b}));
  EXPECT_EQ(set->find("a.example")->certfile, a.cert);
  EXPECT_EQ(set->find("B.EXAMPLE")->certfile, b.cert);  // case-insensitive
  EXPECT_EQ(set->find("x.wild.example")->certfile, b.cert);
  EXPECT_EQ(set->find("y.x.wild.example"), nullptr);  // a wildcard is one label
  EXPECT_EQ(set->find("wild.example"), nullptr);
  EXPECT_EQ(set->find("other.example"), nullptr);
  EXPECT_EQ(set->find(""), nullptr);
}

TEST_F(TlsTest, LoadErrorsNameTheFileAndTheReason) {
  const Pair a = issue("a", "a.example", "DNS:a.example");
  const Pair b = issue("b", "b.example", "DNS:b.example");
  auto message = [](const Config& c) {
    try {
      (void)Contexts::load(c);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  EXPECT_EQ(message(config_of({{a.cert, b.key}})), "keyfile " + b.key + " does not match the certificate in " + a.cert);
  EXPECT_NE(message(config_of({{dir_ + "/missing.pem", a.key}})).find(dir_ + "/missing.pem"), std::string::npos);
  Config bad_ciphers = config_of({a});
  bad_ciphers.ciphers = "NOT-A-CIPHER";
  EXPECT_NE(message(bad_ciphers).find("ciphers"), std::string::npos);
  Config mtls = config_of({a});
  mtls.cert_reqs = ClientCerts::kRequired;
  EXPECT_NE(message(mtls).find("needs ca_certs"), std::string::npos);
  Config old = config_of({a});
  old.min_version = "1.1";
  EXPECT_NE(message(old).find("tls_min_version"), std::string::npos);
}

TEST_F(TlsTest, StoreReloadsChangedFilesAndKeepsTheOldSetOnFailure) {
  const Pair a = issue("a", "a.example", "DNS:a.example");
  const Pair b = issue("b", "b.example", "DNS:b.example");
  const std::string cert = dir_ + "/live.pem", key = dir_ + "/live.key";
  fs::copy_file(a.cert, cert);
  fs::copy_file(a.key, key);
  CertificateStore store(config_of({{cert, key}}));
  const auto first = store.current();
  EXPECT_EQ(store.check(), CertificateStore::Reload::kUnchanged);

  // A renewal that replaced the certificate but not yet the key: rejected, the old set serves,
  // and the same files are not tried again every second.
  fs::copy_file(b.cert, cert, fs::copy_options::overwrite_existing);
  EXPECT_EQ(store.check(), CertificateStore::Reload::kFailed);
  EXPECT_NE(store.last_error().find("does not match"), std::string::npos) << store.last_error();
  EXPECT_EQ(store.current(), first);
  EXPECT_EQ(store.check(), CertificateStore::Reload::kUnchanged);

  // The key arrives: the new pair loads.
  fs::copy_file(b.key, key, fs::copy_options::overwrite_existing);
  EXPECT_EQ(store.check(), CertificateStore::Reload::kReloaded);
  EXPECT_NE(store.current(), first);
  EXPECT_EQ(store.current()->certificates()[0].name, "b.example");
  EXPECT_TRUE(store.last_error().empty());
}

// Drives a client SSL and a server Session over a non-blocking socketpair until both finish.
bool handshake(SSL* client, Session& server) {
  for (int i = 0; i < 200; ++i) {
    const int c = SSL_do_handshake(client);
    const Io s = server.established() ? Io::kDone : server.handshake();
    if (c == 1 && s == Io::kDone) return true;
    if (s == Io::kError || s == Io::kClosed) return false;
    if (c != 1 && SSL_get_error(client, c) != SSL_ERROR_WANT_READ && SSL_get_error(client, c) != SSL_ERROR_WANT_WRITE)
      return false;
  }
  return false;
}

struct Connection {
  int fds[2] = {-1, -1};
  SSL* client = nullptr;
  std::unique_ptr<Session> server;
  Connection(SSL_CTX* client_ctx, std::shared_ptr<const Contexts> contexts, SSL_SESSION* resume = nullptr) {
    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds);
    client = SSL_new(client_ctx);
    SSL_set_fd(client, fds[0]);
    SSL_set_connect_state(client);
    // SSL_set_tlsext_host_name without its C cast.
    static char host[] = "a.example";
    SSL_ctrl(client, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, host);
    if (resume != nullptr) SSL_set_session(client, resume);
    server = std::make_unique<Session>(std::move(contexts), fds[1]);
  }
  ~Connection() {
    // A client freed without close_notify marks its session not resumable (OpenSSL's
    // ssl_clear_bad_session), as a browser's torn connection would.
    (void)SSL_shutdown(client);
    SSL_free(client);
    server.reset();
    ::close(fds[0]);
    ::close(fds[1]);
  }
  // The client reads one byte the server wrote: TLS 1.3 tickets arrive after the handshake.
  bool exchange_a_byte() {
    if (server->write("x", 1).status != Io::kDone) return false;
    char c = 0;
    for (int i = 0; i < 50; ++i) {
      if (SSL_read(client, &c, 1) == 1) return c == 'x';
    }
    return false;
  }
};

TEST_F(TlsTest, TicketFromOneWorkerResumesOnAnother) {
  init_ticket_secret();  // the master's, inherited by both "workers"
  const Pair a = issue("a", "a.example", "DNS:a.example");
  CertificateStore worker1(config_of({a}));
  CertificateStore worker2(config_of({a}));  // loaded on its own, as each worker does
  for (const int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    SCOPED_TRACE(version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2");
    SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(client_ctx, version);
    SSL_CTX_set_max_proto_version(client_ctx, version);
    SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_CLIENT);
    SSL_SESSION* ticket = nullptr;
    {
      Connection first(client_ctx, worker1.current());
      ASSERT_TRUE(handshake(first.client, *first.server)) << openssl_errors();
      EXPECT_FALSE(first.server->info().resumed);
      EXPECT_EQ(first.server->info().server_name, "a.example");
      EXPECT_EQ(first.server->info().alpn, "");  // the client offered none
      ASSERT_TRUE(first.exchange_a_byte());
      ticket = SSL_get1_session(first.client);
      ASSERT_NE(ticket, nullptr);
      ASSERT_TRUE(SSL_SESSION_is_resumable(ticket));
    }
    {
      Connection second(client_ctx, worker2.current(), ticket);
      ASSERT_TRUE(handshake(second.client, *second.server)) << openssl_errors();
      EXPECT_TRUE(second.server->info().resumed) << "worker 2 decrypts worker 1's ticket";
      EXPECT_EQ(SSL_session_reused(second.client), 1);
    }
    SSL_SESSION_free(ticket);
    SSL_CTX_free(client_ctx);
  }
}

}  // namespace
}  // namespace keel::tls
