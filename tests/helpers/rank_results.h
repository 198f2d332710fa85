// Reading what tests/helpers/rank_behaviour prints: one "RESULT ..." line per rank, prefixed
// with the rank by ringlink-run.
#pragma once

#include <map>
#include <regex>
#include <string>

namespace ringlink::testing {

// RESULT lines by rank: "[2] RESULT timeout peer=3 ms=2001: ..." -> {2: "timeout peer=3 ms=2001: ..."}
inline std::map<int, std::string> results(const std::string& output) {
  std::map<int, std::string> r;
  std::regex line(R"(\[(\d+)\] RESULT (.*))");
  for (std::sregex_iterator it(output.begin(), output.end(), line), end; it != end; ++it)
    r[std::stoi((*it)[1])] = (*it)[2];
  return r;
}

// The "ms=N" field of a RESULT line, or -1.
inline int elapsed_ms(const std::string& result) {
  std::smatch m;
  return std::regex_search(result, m, std::regex(R"(ms=(\d+))")) ? std::stoi(m[1]) : -1;
}

// The "at=T" field (CLOCK_MONOTONIC milliseconds) of a RESULT line, or -1.
inline long long at_ms(const std::string& result) {
  std::smatch m;
  return std::regex_search(result, m, std::regex(R"( at=(\d+))")) ? std::stoll(m[1]) : -1;
}

// The times of one kind of stamp line by rank: "[2] EXITING at=123" -> {2: 123} for "EXITING".
inline std::map<int, long long> stamps(const std::string& output, const std::string& what) {
  std::map<int, long long> r;
  std::regex line(R"(\[(\d+)\] )" + what + R"( at=(\d+))");
  for (std::sregex_iterator it(output.begin(), output.end(), line), end; it != end; ++it)
    r[std::stoi((*it)[1])] = std::stoll((*it)[2]);
  return r;
}

}  // namespace ringlink::testing
