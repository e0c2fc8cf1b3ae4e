// Session tickets that every worker of a service can decrypt: the ticket keys are derived from
// one secret and the current time slot (ticket_key_rotation long), so workers agree on them
// without talking to each other. A ticket is valid for one period (the session timeout), so one
// issued late in a period is still decrypted, and renewed, under the previous period's keys.
// The secret is made once per service (by the first master), reaches the workers by fork and
// the next master of an upgrade by an inherited descriptor, so a client resumes on any worker,
// after a HUP and across upgrade generations.
#pragma once

#include <openssl/ssl.h>

#include <chrono>

namespace keel::tls {

// The environment variable that hands the secret's descriptor to the next master.
inline constexpr const char* kTicketSecretEnv = "KEEL_TLS_TICKET_FD";

// Adopts the secret handed over in $KEEL_TLS_TICKET_FD, else makes a new one. Idempotent;
// throws when the inherited descriptor cannot be read or no random bytes are available.
void init_ticket_secret();
// A descriptor holding the secret (close-on-exec: the upgrade's handover clears that); -1
// before init_ticket_secret().
int ticket_secret_fd() noexcept;
// Makes ctx issue and accept tickets under the shared keys.
void use_shared_ticket_keys(SSL_CTX* ctx, std::chrono::seconds rotation);

}  // namespace keel::tls
