#include "tls/tickets.hpp"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>

namespace keel::tls {
namespace {

constexpr std::size_t kSecretSize = 32;
std::array<unsigned char, kSecretSize> g_secret{};
int g_secret_fd = -1;
std::atomic<long long> g_rotation_seconds{3600};

struct TicketKeys {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
};

void derive(const char* label, long long slot, unsigned char* out, std::size_t size) {
  unsigned char input[32] = {};
  const std::size_t label_len = std::strlen(label);
  std::memcpy(input, label, label_len);
  for (int i = 0; i < 8; ++i)
    input[label_len + static_cast<std::size_t>(i)] = static_cast<unsigned char>(slot >> (56 - 8 * i));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  HMAC(EVP_sha256(), g_secret.data(), static_cast<int>(g_secret.size()), input, label_len + 8, digest, &digest_len);
  std::memcpy(out, digest, size);
}

TicketKeys keys_for(long long slot) {
  TicketKeys k{};
  derive("keel-ticket-name", slot, k.name, sizeof k.name);
  derive("keel-ticket-aes", slot, k.aes, sizeof k.aes);
  derive("keel-ticket-hmac", slot, k.hmac, sizeof k.hmac);
  return k;
}

long long current_slot() {
  return static_cast<long long>(std::time(nullptr)) / g_rotation_seconds.load(std::memory_order_relaxed);
}

bool init_mac(EVP_MAC_CTX* mac, unsigned char* key) {
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
                               OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

// OpenSSL's ticket key callback: enc=1 issues a ticket under the current slot's keys; enc=0
// finds the keys a ticket was issued under (this slot: 1; the previous one: 2, valid but
// renewed; older or unknown: 0, a full handshake).
int ticket_key_callback(SSL*, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX* cipher,
                        EVP_MAC_CTX* mac, int enc) {
  const long long slot = current_slot();
  if (enc == 1) {
    TicketKeys k = keys_for(slot);
    if (RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(key_name, k.name, 16);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1 || !init_mac(mac, k.hmac)) return -1;
    return 1;
  }
  for (long long s : {slot, slot - 1}) {
    TicketKeys k = keys_for(s);
    if (std::memcmp(key_name, k.name, 16) != 0) continue;
    if (!init_mac(mac, k.hmac) || EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
    return s == slot ? 1 : 2;
  }
  return 0;
}

}  // namespace

void init_ticket_secret() {
  if (g_secret_fd >= 0) return;
  if (const char* env = std::getenv(kTicketSecretEnv); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long fd = std::strtol(env, &end, 10);
    if (*end != '\0' || fd < 0 || fd > 1'000'000)
      throw std::runtime_error(std::string(kTicketSecretEnv) + "=" + env + " is not a descriptor number");
    const ssize_t n = ::pread(static_cast<int>(fd), g_secret.data(), g_secret.size(), 0);
    if (n != static_cast<ssize_t>(g_secret.size()))
      throw std::runtime_error(std::string("cannot read the TLS ticket secret from the inherited descriptor ") + env);
    ::unsetenv(kTicketSecretEnv);
    g_secret_fd = static_cast<int>(fd);
    ::fcntl(g_secret_fd, F_SETFD, FD_CLOEXEC);
    return;
  }
  if (RAND_bytes(g_secret.data(), static_cast<int>(g_secret.size())) != 1)
    throw std::runtime_error("no random bytes for the TLS session ticket secret");
  const int fd = ::memfd_create("keel-tls-ticket-secret", MFD_CLOEXEC);
  if (fd < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
  if (::pwrite(fd, g_secret.data(), g_secret.size(), 0) != static_cast<ssize_t>(g_secret.size())) {
    ::close(fd);
    throw std::runtime_error(std::string("cannot store the TLS ticket secret: ") + std::strerror(errno));
  }
  g_secret_fd = fd;
}

int ticket_secret_fd() noexcept {
  return g_secret_fd;
}

void use_shared_ticket_keys(SSL_CTX* ctx, std::chrono::seconds rotation) {
  init_ticket_secret();  // normally done already by the master, before the workers fork
  g_rotation_seconds.store(std::max<long long>(1, rotation.count()), std::memory_order_relaxed);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_callback);
  // The session timeout (and the lifetime hint clients see): one rotation period.
  SSL_CTX_set_timeout(ctx, static_cast<long>(std::max<long long>(1, rotation.count())));
}

}  // namespace keel::tls
