// TLS settings of the traffic listeners, filled from ServerOptions by the composition root.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace keel::tls {

enum class ClientCerts { kNone, kOptional, kRequired };

struct CertificatePair {
  std::string certfile;  // PEM: the certificate, then its chain
  std::string keyfile;   // PEM private key, possibly encrypted
};

struct Config {
  // [0] is the default pair (certfile/keyfile); the others are chosen by SNI, by the names in
  // their certificates (subjectAltName DNS entries, else the common name).
  std::vector<CertificatePair> certificates;
  std::string keyfile_password_file;  // decrypts every encrypted key
  std::string ca_certs;               // CA bundle that client certificates are verified against
  ClientCerts cert_reqs = ClientCerts::kNone;
  std::string ciphers;       // TLS 1.2 cipher list (OpenSSL syntax)
  std::string ciphersuites;  // TLS 1.3 suites (OpenSSL syntax)
  std::string min_version = "1.2";
  // In the server's order of preference; the HTTP/1 connection speaks both 1.x (as nginx offers).
  std::vector<std::string> alpn{"http/1.1", "http/1.0"};
  std::chrono::seconds ticket_key_rotation{3600};

  [[nodiscard]] bool enabled() const noexcept { return !certificates.empty(); }
};

// Mozilla's "intermediate" TLS 1.2 list (server-side TLS guidelines, version 5.7) without its
// finite-field DHE suites: every client that has them has ECDHE too, and DHE costs a 2048-bit
// modular exponentiation per handshake on a well-known group (testssl's LOGJAM note).
inline constexpr const char* kIntermediateCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* kDefaultCiphersuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

}  // namespace keel::tls
