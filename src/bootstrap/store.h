// The rendezvous store, for the engine: rank 0 serves it (store_server.h); every rank talks to
// it over a request channel (store_client.h) and a watch channel (watch_channel.h). The
// protocol is in store_protocol.h, its wire format in wire.h.
#pragma once

#include "bootstrap/store_client.h"
#include "bootstrap/store_server.h"
#include "bootstrap/watch_channel.h"
