// Stream order for operations on device memory. At call time (on the caller's thread) the
// wrapper marks the caller's stream; the operation's first device operation follows that mark
// (the engine's stream waits for it: no host synchronization). With a hold, work queued on the
// caller's stream after the call waits until the operation's device result is ready (or it
// failed): the hold is released when the operation ends.
#pragma once

#include <memory>

#include "comm/device_staging.h"
#include "comm/operation.h"

namespace ringlink::detail {

// `stream`: a CUstream; `hold`: make the stream's later work wait for the operation (the stream
// overloads; the calls without a stream only follow the legacy default stream). Errors from the
// driver are TransportErrors naming `rank` and the operation.
std::unique_ptr<Operation> stream_ordered(int rank, DeviceStaging& device, void* stream, bool hold,
                                          std::unique_ptr<Operation> op);

// The result of a one-rank collective on device memory: a device copy (`src` may equal `dst`).
std::unique_ptr<Operation> device_copy(const char* name, DeviceStaging& device, const void* src, void* dst,
                                       size_t bytes);

}  // namespace ringlink::detail
