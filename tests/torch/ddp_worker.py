"""One rank of the DDP test: DistributedDataParallel trains ddp_model's CNN over a backend.

    ddp_worker.py --backend ringlink|gloo [--device cpu|cuda] [--kill-rank R --kill-step S]

Reports the final parameters and the losses; with --kill-rank, rank R kills itself (SIGKILL)
at step S and the others report the exception they got instead.
"""

import argparse
import os
import signal
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import ringlink_torch
from ddp_model import flat_parameters, make_model, train
from worker_util import report, wait_for_reports

p = argparse.ArgumentParser()
p.add_argument("--backend", required=True)
p.add_argument("--device", default="cpu")
p.add_argument("--kill-rank", type=int, default=-1)
p.add_argument("--kill-step", type=int, default=3)
args = p.parse_args()

torch.set_num_threads(1)
if args.device == "cuda":
    torch.cuda.set_device(0)  # the ranks share one GPU
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
dist.init_process_group(args.backend)
rank, world = dist.get_rank(), dist.get_world_size()

model = make_model().to(args.device)
# Small buckets: several allreduces in flight per step, as in a real model.
ddp = DDP(model, bucket_cap_mb=0.002)
t_kill = [None]


def maybe_die(step):
    if step == args.kill_step:
        if rank == args.kill_rank:
            os.kill(os.getpid(), signal.SIGKILL)
        t_kill[0] = time.monotonic()


try:
    losses = train(ddp, rank, world, args.device, on_step=maybe_die)
except Exception as e:
    report(rank, {"error_type": type(e).__name__, "error": str(e),
                  "ringlink_error": isinstance(e, ringlink_torch.Error),
                  "seconds_after_kill": time.monotonic() - t_kill[0] if t_kill[0] else None})
    wait_for_reports([r for r in range(world) if r != args.kill_rank])
    os._exit(0)  # the group is broken: no orderly shutdown to wait for
pg = dist.distributed_c10d._get_default_group()
transport = getattr(pg, "transport", None) if args.backend == "ringlink" else None
if args.backend == "ringlink" and transport is None:  # torch 2.x: the backend inside the group
    transport = pg._get_backend(torch.device(args.device)).transport
report(rank, {"params": flat_parameters(model), "losses": losses, "backend": args.backend, "transport": transport})
dist.destroy_process_group()
