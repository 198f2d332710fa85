// What every rank must plan collectives with alike (chunk sizes decide message sizes, the cost
// model decides algorithms), and its encoding: rank 0 publishes its values through the store
// and every rank uses them (Engine::agree_on_plan_inputs).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "algorithms/select.h"
#include "ringlink/options.h"

namespace ringlink::detail {

struct PlanInputs {
  Algorithm algorithm = Algorithm::Auto;
  size_t chunk_bytes = 0;
  algo::LinkModel model;
};

std::string encode(const PlanInputs& p);
// wire::FormatError when the bytes are not what encode() writes or a value is out of range
// (an algorithm that does not exist, a chunk outside 256 bytes to 1 GiB, a cost constant that
// is not finite, negative, or a zero rate).
PlanInputs decode_plan_inputs(std::string_view bytes);
std::string describe(const PlanInputs& p);  // for people

}  // namespace ringlink::detail
