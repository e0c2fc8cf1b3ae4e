#include "tls/context.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "config/read_file.hpp"
#include "log/log.hpp"
#include "tls/tickets.hpp"

namespace keel::tls {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct PasswordRequest {
  const std::string* password = nullptr;
  bool asked = false;
};

int password_callback(char* buf, int size, int, void* userdata) {
  auto* req = static_cast<PasswordRequest*>(userdata);
  req->asked = true;
  // Never OpenSSL's default, which would prompt on the terminal.
  if (req->password == nullptr || req->password->empty()) return -1;
  const int n = static_cast<int>(std::min<std::size_t>(req->password->size(), static_cast<std::size_t>(size)));
  std::memcpy(buf, req->password->data(), static_cast<std::size_t>(n));
  return n;
}

std::int64_t not_after_of(X509* cert) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return 0;
  return static_cast<std::int64_t>(::timegm(&tm));
}

void names_of(X509* cert, Certificate& out) {
  if (auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const auto* data = reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName));
      out.names.push_back(lower(std::string_view(data, static_cast<std::size_t>(ASN1_STRING_length(n->d.dNSName)))));
    }
    GENERAL_NAMES_free(sans);
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  if (const int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0) {
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    const auto* data = reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn));
    std::string name = lower(std::string_view(data, static_cast<std::size_t>(ASN1_STRING_length(cn))));
    if (std::find(out.names.begin(), out.names.end(), name) == out.names.end()) out.names.push_back(name);
  }
  out.name = out.names.empty() ? out.certfile : out.names.front();
}

[[noreturn]] void fail(const std::string& what) {
  const std::string why = openssl_errors();
  throw std::runtime_error(why.empty() ? what : what + ": " + why);
}

int min_version(const std::string& v) {
  if (v == "1.2" || v == "TLSv1.2") return TLS1_2_VERSION;
  if (v == "1.3" || v == "TLSv1.3") return TLS1_3_VERSION;
  throw std::runtime_error("tls_min_version: expected 1.2 or 1.3, got '" + v + "'");
}

SSL_CTX* make_context(const Config& config, const CertificatePair& pair, const std::string& password,
                      Certificate& out) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) fail("cannot create a TLS context");
  out.ctx = ctx;  // freed by the caller's cleanup from here on
  SSL_CTX_set_min_proto_version(ctx, min_version(config.min_version));
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // No compression (CRIME), no renegotiation (a client-driven CPU drain and an old attack
  // surface; OpenSSL 3 refuses client-initiated renegotiation by default too). The server's
  // cipher order: every suite offered is an AEAD with forward secrecy, so this only decides
  // which strong one, and ChaCha20 first for clients that prefer it (no AES hardware). A client
  // that closes without close_notify is an EOF like any other: HTTP/1 frames its own messages.
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
  // Writes may be partial and retried from a buffer that moved (the connection's output string);
  // idle connections give their read/write buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // One read(2) per request instead of two (a record's header, then its body): OpenSSL reads
  // what the socket has. The connection reads until SSL_read wants more (never stops at a short
  // read), so records buffered here are never left behind an edge-triggered epoll.
  SSL_CTX_set_read_ahead(ctx, 1);
  const std::string ciphers = config.ciphers.empty() ? kIntermediateCiphers : config.ciphers;
  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) fail("ciphers: no usable cipher in '" + ciphers + "'");
  const std::string suites = config.ciphersuites.empty() ? kDefaultCiphersuites : config.ciphersuites;
  if (SSL_CTX_set_ciphersuites(ctx, suites.c_str()) != 1)
    fail("tls_ciphersuites: no usable TLS 1.3 suite in '" + suites + "'");
  if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) fail("cannot set the key exchange groups");
  SSL_CTX_set_dh_auto(ctx, 1);  // for a configured list with DHE suites

  PasswordRequest req{&password, false};
  SSL_CTX_set_default_passwd_cb(ctx, password_callback);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, &req);
  if (SSL_CTX_use_certificate_chain_file(ctx, pair.certfile.c_str()) != 1)
    fail("certfile " + pair.certfile + ": cannot load a PEM certificate chain");
  if (SSL_CTX_use_PrivateKey_file(ctx, pair.keyfile.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (req.asked && password.empty()) {
      ERR_clear_error();
      throw std::runtime_error("keyfile " + pair.keyfile + " is encrypted: set keyfile_password_file");
    }
    if (req.asked) {
      ERR_clear_error();
      throw std::runtime_error("keyfile " + pair.keyfile +
                               ": cannot decrypt it with the keyfile_password_file password");
    }
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      throw std::runtime_error("keyfile " + pair.keyfile + " does not match the certificate in " + pair.certfile);
    }
    fail("keyfile " + pair.keyfile + ": cannot load a PEM private key");
  }
  SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr);
  SSL_CTX_set_default_passwd_cb(ctx, nullptr);
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    throw std::runtime_error("keyfile " + pair.keyfile + " does not match the certificate in " + pair.certfile);
  }
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  out.certfile = pair.certfile;
  out.keyfile = pair.keyfile;
  out.not_after = not_after_of(leaf);
  names_of(leaf, out);

  if (config.cert_reqs != ClientCerts::kNone) {
    if (config.ca_certs.empty())
      throw std::runtime_error("cert_reqs " +
                               std::string(config.cert_reqs == ClientCerts::kRequired ? "required" : "optional") +
                               " needs ca_certs (the CA bundle client certificates are verified against)");
    if (SSL_CTX_load_verify_locations(ctx, config.ca_certs.c_str(), nullptr) != 1)
      fail("ca_certs " + config.ca_certs + ": cannot load PEM CA certificates");
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.ca_certs.c_str());
    if (names == nullptr) fail("ca_certs " + config.ca_certs + ": no CA certificate in it");
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(
        ctx, SSL_VERIFY_PEER | (config.cert_reqs == ClientCerts::kRequired ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        nullptr);
    SSL_CTX_set_verify_depth(ctx, 10);
  }
  // Resumption: stateless tickets under keys every worker shares; no per-process session cache.
  static const unsigned char kSessionContext[] = "keel";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  use_shared_ticket_keys(ctx, config.ticket_key_rotation);
  return ctx;
}

}  // namespace

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    // "error:0A000086:SSL routines::certificate verify failed" -> the reason after the last ':'.
    std::string_view text(buf);
    if (const auto colon = text.rfind(':'); colon != std::string_view::npos) text.remove_prefix(colon + 1);
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out;
}

std::shared_ptr<const Contexts> Contexts::load(const Config& config) {
  if (!config.enabled()) throw std::runtime_error("TLS needs certfile and keyfile");
  std::string password;
  if (!config.keyfile_password_file.empty()) {
    if (const int err = config::read_whole_file(config.keyfile_password_file, password); err != 0)
      throw std::runtime_error("keyfile_password_file " + config.keyfile_password_file + ": " + std::strerror(err));
    while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
  }
  ERR_clear_error();
  std::shared_ptr<Contexts> set(new Contexts());
  for (const std::string& p : config.alpn) {
    if (p.empty() || p.size() > 255) throw std::runtime_error("alpn: invalid protocol name '" + p + "'");
    set->alpn_wire_ += static_cast<char>(p.size());
    set->alpn_wire_ += p;
  }
  for (const CertificatePair& pair : config.certificates) {
    set->certificates_.emplace_back();
    make_context(config, pair, password, set->certificates_.back());
  }
  std::fill(password.begin(), password.end(), '\0');
  for (Certificate& c : set->certificates_) {
    // SSL_CTX_set_tlsext_servername_callback without its C cast.
    SSL_CTX_callback_ctrl(c.ctx, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB, reinterpret_cast<void (*)()>(on_server_name));
    SSL_CTX_set_tlsext_servername_arg(c.ctx, set.get());
    SSL_CTX_set_alpn_select_cb(c.ctx, on_alpn, set.get());
  }
  return set;
}

Contexts::~Contexts() {
  for (Certificate& c : certificates_) SSL_CTX_free(c.ctx);
}

SSL* Contexts::new_ssl(int fd) const {
  SSL* ssl = SSL_new(certificates_.front().ctx);
  if (ssl == nullptr) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

const Certificate* Contexts::find(std::string_view server_name) const noexcept {
  if (server_name.empty() || server_name.size() > 253) return nullptr;
  char buf[254];
  for (std::size_t i = 0; i < server_name.size(); ++i)
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(server_name[i])));
  const std::string_view name(buf, server_name.size());
  for (const Certificate& c : certificates_)
    for (const std::string& n : c.names)
      if (n == name) return &c;
  if (const auto dot = name.find('.'); dot != std::string_view::npos && dot > 0) {
    const std::string_view parent = name.substr(dot);  // ".example.com"
    for (const Certificate& c : certificates_)
      for (const std::string& n : c.names)
        if (n.size() == parent.size() + 1 && n[0] == '*' && std::string_view(n).substr(1) == parent) return &c;
  }
  return nullptr;
}

int Contexts::on_server_name(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const Contexts*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  const Certificate* c = self->find(name);
  if (c == nullptr) return SSL_TLSEXT_ERR_NOACK;  // an unknown name gets the default certificate
  if (c->ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, c->ctx);
  return SSL_TLSEXT_ERR_OK;
}

int Contexts::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                      unsigned int inlen, void* arg) {
  const auto* self = static_cast<const Contexts*>(arg);
  unsigned char* selected = nullptr;
  const auto* server = reinterpret_cast<const unsigned char*>(self->alpn_wire_.data());
  if (SSL_select_next_proto(&selected, outlen, server, static_cast<unsigned int>(self->alpn_wire_.size()), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // RFC 7301: no_application_protocol
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

CertificateStore::CertificateStore(Config config) : config_(std::move(config)) {
  signature_ = files_signature();
  current_ = Contexts::load(config_);
}

std::string CertificateStore::files_signature() const {
  std::string sig;
  auto add = [&sig](const std::string& path) {
    if (path.empty()) return;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      sig += path + ":missing;";
      return;
    }
    sig += path + ':' + std::to_string(st.st_dev) + '/' + std::to_string(st.st_ino) + '/' + std::to_string(st.st_size) +
           '/' + std::to_string(st.st_mtim.tv_sec) + '.' + std::to_string(st.st_mtim.tv_nsec) + ';';
  };
  for (const CertificatePair& p : config_.certificates) {
    add(p.certfile);
    add(p.keyfile);
  }
  add(config_.ca_certs);
  add(config_.keyfile_password_file);
  return sig;
}

CertificateStore::Reload CertificateStore::check() {
  std::string sig = files_signature();
  if (sig == signature_) return Reload::kUnchanged;
  signature_ = std::move(sig);
  return reload();
}

CertificateStore::Reload CertificateStore::reload() {
  try {
    current_ = Contexts::load(config_);
    error_.clear();
    return Reload::kReloaded;
  } catch (const std::exception& e) {
    error_ = e.what();
    return Reload::kFailed;
  }
}

void log_outcome(const CertificateStore& store, CertificateStore::Reload outcome) {
  if (outcome == CertificateStore::Reload::kFailed) {
    log::write(log::Level::kError, "keel.tls", "certificate_reload_failed",
               {{"error", store.last_error()}, {"detail", "the certificates loaded before keep serving"}});
  } else if (outcome == CertificateStore::Reload::kReloaded) {
    for (const Certificate& c : store.current()->certificates())
      log::write(log::Level::kInfo, "keel.tls", "certificate_loaded",
                 {{"name", c.name}, {"certfile", c.certfile}, {"not_after", c.not_after}});
  }
}

}  // namespace keel::tls
