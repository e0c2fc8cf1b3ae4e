// What a handler can learn about the TLS connection its request came on (Request::tls()).
#pragma once

#include <string>

namespace keel {

struct TlsInfo {
  std::string version;      // "TLSv1.3", "TLSv1.2"
  std::string cipher;       // IANA name, e.g. "TLS_AES_128_GCM_SHA256"
  std::string server_name;  // SNI the client sent; empty when none
  std::string alpn;         // negotiated application protocol; empty when the client offered none
  bool resumed = false;     // an abbreviated handshake (session ticket)
  // The client certificate (mutual TLS), verified against ca_certs when presented: its subject
  // and issuer in RFC 2253 form and the certificate itself as PEM; empty when the client sent none.
  std::string client_subject;
  std::string client_issuer;
  std::string client_certificate_pem;
};

}  // namespace keel
