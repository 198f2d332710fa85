"""One rank of the killed-rank test: ranks loop on all_reduce; rank R SIGKILLs itself after a few
rounds and the others report the exception they got (or that they got none within 60 s).

    kill_worker.py R
"""

import os
import signal
import sys
import time

import torch
import torch.distributed as dist

import ringlink_torch
from worker_util import report, wait_for_reports

victim = int(sys.argv[1])
dist.init_process_group("ringlink")
rank = dist.get_rank()
t = torch.ones(100_000)
for _ in range(3):
    dist.all_reduce(t)
dist.barrier()
if rank == victim:
    os.kill(os.getpid(), signal.SIGKILL)
t0 = time.monotonic()
try:
    while time.monotonic() - t0 < 60:
        dist.all_reduce(t)
    report(rank, {"error_type": None})
except Exception as e:
    report(rank, {"error_type": type(e).__name__, "error": str(e), "ringlink_error": isinstance(e, ringlink_torch.Error),
                  "peer_lost": isinstance(e, ringlink_torch.PeerLostError), "peer": getattr(e, "peer", None),
                  "seconds": time.monotonic() - t0})
wait_for_reports([r for r in range(dist.get_world_size()) if r != victim])
os._exit(0)  # the group lost a rank: nothing to shut down in order
