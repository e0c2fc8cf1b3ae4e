#include "tls/session.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace keel::tls {
namespace {

std::string name_line(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n > 0 ? n : 0));
  BIO_free(bio);
  return out;
}

std::string pem_of(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n > 0 ? n : 0));
  BIO_free(bio);
  return out;
}

}  // namespace

Session::Session(std::shared_ptr<const Contexts> contexts, int fd) : contexts_(std::move(contexts)) {
  ssl_ = contexts_->new_ssl(fd);
}

Session::~Session() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

Io Session::handshake() {
  ERR_clear_error();
  const int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    established_ = true;
    fill_info();
    return Io::kDone;
  }
  return result(ret, true).status;
}

IoResult Session::read(char* buf, std::size_t size) {
  ERR_clear_error();
  std::size_t got = 0;
  const int ret = SSL_read_ex(ssl_, buf, size, &got);
  if (ret == 1) return {Io::kDone, got};
  return result(ret, false);
}

IoResult Session::write(const char* data, std::size_t size) {
  ERR_clear_error();
  std::size_t put = 0;
  const int ret = SSL_write_ex(ssl_, data, size, &put);
  if (ret == 1) return {Io::kDone, put};
  return result(ret, false);
}

void Session::close_notify() noexcept {
  if (ssl_ == nullptr || !established_) return;
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);  // sends ours; the client's is not waited for
  ERR_clear_error();
}

IoResult Session::result(int ret, bool handshaking) {
  const int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      return {Io::kWantRead, 0};
    case SSL_ERROR_WANT_WRITE:
      return {Io::kWantWrite, 0};
    case SSL_ERROR_ZERO_RETURN:
      if (handshaking) classify_failure(err);
      return {Io::kClosed, 0};
    case SSL_ERROR_SYSCALL:  // a socket error (ECONNRESET); an EOF is ZERO_RETURN (IGNORE_UNEXPECTED_EOF)
      if (handshaking) classify_failure(err);
      ERR_clear_error();
      return {Io::kError, 0};
    default:
      if (handshaking)
        classify_failure(err);
      else
        ERR_clear_error();
      return {Io::kError, 0};
  }
}

void Session::classify_failure(int ssl_error) {
  if (ssl_error == SSL_ERROR_ZERO_RETURN || ssl_error == SSL_ERROR_SYSCALL) {
    failure_reason_ = "peer_closed";
    failure_detail_ = "the client closed the connection during the handshake";
    return;
  }
  const unsigned long e = ERR_peek_last_error();
  const int reason = ERR_GET_REASON(e);
  switch (reason) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
      failure_reason_ = "plain_http";
      break;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_UNKNOWN_PROTOCOL:
      failure_reason_ = "protocol_version";
      break;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
      failure_reason_ = "no_shared_cipher";
      break;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      failure_reason_ = "client_certificate";
      break;
    case SSL_R_NO_APPLICATION_PROTOCOL:
      failure_reason_ = "alpn";
      break;
    default:
      // Alerts the client sent (it rejected our certificate, or gave up): SSL_R_SSLV3_ALERT_* and
      // SSL_R_TLSV1_ALERT_* are 1000 + the alert number.
      failure_reason_ = reason >= 1000 && reason < 1256 ? "peer_alert" : "other";
      break;
  }
  failure_detail_ = openssl_errors();
}

void Session::fill_info() {
  info_.version = SSL_get_version(ssl_);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl_)) info_.cipher = SSL_CIPHER_standard_name(c);
  if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) info_.server_name = sni;
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) info_.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  info_.resumed = SSL_session_reused(ssl_) == 1;
  if (X509* peer = SSL_get1_peer_certificate(ssl_)) {
    info_.client_subject = name_line(X509_get_subject_name(peer));
    info_.client_issuer = name_line(X509_get_issuer_name(peer));
    info_.client_certificate_pem = pem_of(peer);
    X509_free(peer);
  }
}

}  // namespace keel::tls
