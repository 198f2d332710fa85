// The store's challenge-response: each side proves it knows the job token by an HMAC-SHA256,
// keyed with the token, over both sides' fresh nonces and the HELLO that opened the
// connection. The token itself never crosses the wire, and a side that lacks it gets no proof
// it could replay (every proof covers a nonce of the other side's choosing). The labels keep a
// server proof from being reflected as a client proof. OpenSSL's libcrypto does the
// cryptography (store_auth.cc).
#pragma once

#include <string>
#include <string_view>

namespace ringlink::store_auth {

// Initializes libcrypto for this process, once, without its exit-time cleanup: rank 0's store
// thread may still answer a handshake while the process exits, after atexit handlers ran.
// StoreServer::acquire calls it before its process-wide registry exists, so even where the
// application initialized OpenSSL first (with the cleanup), the store is gone before it runs.
void initialize();

// `n` bytes from the system's cryptographic random generator.
std::string random_bytes(size_t n);

// hello_payload: the HELLO frame's payload as sent (it holds the client's nonce);
// server_nonce: the nonce of the store's CHALLENGE.
std::string server_proof(std::string_view token, std::string_view hello_payload, std::string_view server_nonce);
std::string client_proof(std::string_view token, std::string_view hello_payload, std::string_view server_nonce);

// Constant-time comparison of two proofs (false when their sizes differ).
bool proofs_equal(std::string_view a, std::string_view b);

}  // namespace ringlink::store_auth
