// Server-side TLS contexts: one SSL_CTX per certificate/key pair, chosen by SNI, with keel's
// protocol floor, ciphers, ALPN, client-certificate checks and shared session tickets; and the
// store that reloads them when their files change (certificate rotation without a restart).
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tls/config.hpp"

namespace keel::tls {

// Drains OpenSSL's error queue of this thread into one line ("reason; reason"); empty when none.
std::string openssl_errors();

struct Certificate {
  std::string certfile;
  std::string keyfile;
  std::string name;                // the first DNS name (else the common name): metrics and logs
  std::vector<std::string> names;  // every DNS name and the common name, lower case, for SNI
  std::int64_t not_after = 0;      // expiry, Unix seconds
  SSL_CTX* ctx = nullptr;
};

// One loaded configuration, immutable: a connection keeps the set it started its handshake with
// (shared_ptr), so a newer set can replace it while that handshake completes.
class Contexts {
 public:
  // Loads every pair and the CA bundle. Throws std::runtime_error naming the setting or file and
  // OpenSSL's reason: missing or unreadable file, encrypted key without (or with a wrong)
  // password, a key that does not match its certificate, an invalid cipher list.
  static std::shared_ptr<const Contexts> load(const Config& config);
  ~Contexts();
  Contexts(const Contexts&) = delete;
  Contexts& operator=(const Contexts&) = delete;

  // A server-side SSL for an accepted socket (the default certificate until SNI chooses);
  // nullptr when OpenSSL cannot make one.
  SSL* new_ssl(int fd) const;
  const std::vector<Certificate>& certificates() const noexcept { return certificates_; }
  // The pair whose names match an SNI name (exact, then a wildcard of its first label); null: none.
  const Certificate* find(std::string_view server_name) const noexcept;

 private:
  Contexts() = default;
  static int on_server_name(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void* arg);

  std::vector<Certificate> certificates_;
  std::string alpn_wire_;  // the server's protocols, length-prefixed, in preference order
};

// The configured files and the contexts built from them. check() (once a second, from the
// worker's loop) stats the files: when any changed (a Kubernetes secret mount swapping its
// symlink, a renewal rewriting them) it loads a new set; if that fails the current set keeps
// serving and the same files are not retried until they change again.
class CertificateStore {
 public:
  explicit CertificateStore(Config config);  // loads, or throws like Contexts::load
  enum class Reload { kUnchanged, kReloaded, kFailed };
  Reload check();
  // Loads now whether or not the files changed (SIGHUP).
  Reload reload();
  std::shared_ptr<const Contexts> current() const noexcept { return current_; }
  const std::string& last_error() const noexcept { return error_; }
  const Config& config() const noexcept { return config_; }

 private:
  std::string files_signature() const;

  Config config_;
  std::shared_ptr<const Contexts> current_;
  std::string signature_;  // of the files last loaded or tried
  std::string error_;
};

// Logs a load's outcome: a line per certificate loaded (name, file, expiry), or the error with
// the note that the previous certificates keep serving. Nothing when unchanged.
void log_outcome(const CertificateStore& store, CertificateStore::Reload outcome);

}  // namespace keel::tls
