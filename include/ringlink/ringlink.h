// The one header a ringlink user includes.
#pragma once

#include "ringlink/communicator.h"
#include "ringlink/error.h"
#include "ringlink/options.h"
#include "ringlink/types.h"
