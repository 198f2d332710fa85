#include "bootstrap/store_auth.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "bootstrap/store_protocol.h"

namespace ringlink::store_auth {
namespace {

constexpr std::string_view kServerLabel = "ringlink store v2: server proof";
constexpr std::string_view kClientLabel = "ringlink store v2: client proof";

std::string openssl_error(const char* what) {
  char buf[256] = {};
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  return fmt::format("{} failed: {}", what, buf);
}

std::string proof(std::string_view label, std::string_view token, std::string_view hello, std::string_view nonce) {
  // The label, then each part with its length, so no two transcripts encode alike.
  std::string msg;
  for (std::string_view part : {label, hello, nonce}) {
    uint32_t n = static_cast<uint32_t>(part.size());
    msg.append(reinterpret_cast<const char*>(&n), sizeof n);
    msg.append(part);
  }
  initialize();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  // An empty token (allowed when every rank is on one host) is a valid, if useless, HMAC key;
  // HMAC() wants a non-null pointer for it.
  static const unsigned char kNoKey = 0;
  const void* key = token.empty() ? static_cast<const void*>(&kNoKey) : token.data();
  if (!HMAC(EVP_sha256(), key, static_cast<int>(token.size()), reinterpret_cast<const unsigned char*>(msg.data()),
            msg.size(), md, &md_len))
    throw std::runtime_error(openssl_error("HMAC-SHA256"));
  static_assert(store_protocol::kProofBytes == 32);
  return std::string(reinterpret_cast<const char*>(md), md_len);
}

}  // namespace

void initialize() {
  static std::once_flag once;
  std::call_once(once, [] { OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr); });
}

std::string random_bytes(size_t n) {
  initialize();
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error(openssl_error("RAND_bytes"));
  return out;
}

std::string server_proof(std::string_view token, std::string_view hello_payload, std::string_view server_nonce) {
  return proof(kServerLabel, token, hello_payload, server_nonce);
}

std::string client_proof(std::string_view token, std::string_view hello_payload, std::string_view server_nonce) {
  return proof(kClientLabel, token, hello_payload, server_nonce);
}

bool proofs_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace ringlink::store_auth
