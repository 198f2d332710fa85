"""torch.distributed.all_reduce over ringlink against gloo, in one sitting.

    PYTHONPATH=build/src/torch /usr/bin/python3 -m ringlink_torch.bench [options]

Starts 2 ranks (env:// variables set here: loopback MASTER_ADDR, a free MASTER_PORT, a random
RINGLINK_JOB_TOKEN) for each system, alternating systems within each repetition and rotating
their order between repetitions, and prints per size the median bus bandwidth of each system and
ringlink's ratios to gloo, plus the median time of the smallest call (as compare-peers does).

Systems:
  ringlink-tcp  backend "ringlink" over UCX TCP on loopback (UCX_TLS=tcp UCX_NET_DEVICES=lo):
                the same medium as gloo
  ringlink      backend "ringlink" as a user gets it by default (RINGLINK_TRANSPORT=auto; on one
                host UCX picks shared memory)
  gloo          backend "gloo", GLOO_SOCKET_IFNAME=lo

busbw = algbw * 2(n-1)/n, algbw = bytes / time per call, time = the slowest rank's mean over the
timed calls (nccl-tests' definitions). Every size's first result is checked (not timed).
"""

import argparse
import datetime
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from .benchlib import loadavg, parse_size_list, size_label  # tools/benchlib.py, copied beside

SYSTEMS = ["ringlink-tcp", "ringlink", "gloo"]
RATIOS = [("ringlink-tcp", "gloo"), ("ringlink", "gloo")]


def parse_sizes(text):
    sizes = parse_size_list(text)
    for size in sizes:
        if size < 4 or size % 4:
            raise ValueError(f"{size} bytes is not a whole number of float32 elements")
    return sizes


# ---- one rank ----------------------------------------------------------------------------------

def rank_main(args):
    import importlib

    import torch
    import torch.distributed as dist
    if args.backend == "ringlink":
        importlib.import_module("ringlink_torch")  # registers the backend
    torch.set_num_threads(1)
    dist.init_process_group(args.backend)
    rank, n = dist.get_rank(), dist.get_world_size()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(0)  # the ranks share one GPU

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        count = size // 4
        t = torch.ones(count, dtype=torch.float32, device=device)
        dist.all_reduce(t)
        sync()
        if count and not bool((t == n).all()):
            raise SystemExit(f"rank {rank}: wrong all_reduce result at {size} bytes")
        for _ in range(args.warmup):
            dist.all_reduce(t)
        # One call's time on rank 0 sets the iteration count for every rank.
        sync()
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        sync()
        probe = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.broadcast(probe, src=0)
        one = max(probe.item(), 1e-7)
        iters = max(args.iters, int(args.min_time / one)) if one * args.iters < args.min_time else args.iters
        iters = max(1, min(iters, int(args.max_time / one)))
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(t)
        sync()
        per_call = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64)
        dist.all_reduce(per_call, op=dist.ReduceOp.MAX)
        seconds = per_call.item()
        algbw = size / seconds / 1e9
        rows.append({"size": size, "iters": iters, "time_us": seconds * 1e6, "algbw": algbw,
                     "busbw": algbw * 2 * (n - 1) / n})
    if rank == 0:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "device": args.device, "ranks": n, "rows": rows}, f)
    dist.destroy_process_group()


# ---- the driver --------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_env(system):
    env = dict(os.environ)
    for k in ("UCX_TLS", "UCX_NET_DEVICES", "RINGLINK_TRANSPORT", "RANK", "WORLD_SIZE", "MASTER_ADDR",
              "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE"):
        env.pop(k, None)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo"})
    if system == "ringlink-tcp":
        env.update({"UCX_TLS": "tcp", "UCX_NET_DEVICES": "lo", "RINGLINK_TRANSPORT": "ucx"})
    return env


def run_system(system, args, ranks, out_json):
    backend = "gloo" if system == "gloo" else "ringlink"
    env = system_env(system)
    env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(ranks),
                "LOCAL_WORLD_SIZE": str(ranks), "RINGLINK_JOB_TOKEN": secrets.token_hex(16)})
    cmd = [sys.executable, "-m", "ringlink_torch.bench", "--rank-mode", "--backend", backend, "--device",
           args.device, "--sizes", ",".join(str(s) for s in args.size_list), "--iters", str(args.iters),
           "--warmup", str(args.warmup), "--min-time", str(args.min_time), "--max-time", str(args.max_time),
           "--json", out_json]
    procs = []
    logs = []
    for r in range(ranks):
        log = tempfile.TemporaryFile(mode="w+")
        procs.append(subprocess.Popen(cmd, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=log,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True))
        logs.append(log)
    deadline = time.monotonic() + args.time_limit
    failed = None
    for r, p in enumerate(procs):
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            failed = f"timed out after {args.time_limit} s"
            break
        if p.returncode != 0 and not failed:
            logs[r].seek(0)
            failed = f"rank {r} exited with {p.returncode}: " + " | ".join(logs[r].read().strip().splitlines()[-3:])
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, 9)
            p.wait()
    for log in logs:
        log.close()
    if failed:
        return None, failed
    with open(out_json) as f:
        return json.load(f), None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"


def summarize(results, systems, args, header):
    present = [s for s in systems if results.get(s)]
    pairs = [(a, b) for a, b in RATIOS if a in present and b in present]
    lines = [header, "", f"## all_reduce float32 sum, {args.ranks} ranks, {args.device} tensors: median busbw (GB/s) "
             f"over {args.reps} repetitions"]
    head = f"{'size':>8}  " + "  ".join(f"{s:>12}" for s in present)
    if pairs:
        head += "   " + "  ".join(f"{a.replace('ringlink', 'rl') + '/' + b:>12}" for a, b in pairs)
    lines.append(head)
    med = {}
    for size in args.size_list:
        for s in present:
            med[(s, size)] = median([r["busbw"] for d in results[s] for r in d["rows"] if r["size"] == size])
        row = f"{size_label(size):>8}  " + "  ".join(
            f"{'-' if med[(s, size)] is None else format(med[(s, size)], '.3f'):>12}" for s in present)
        if pairs:
            row += "   " + "  ".join(f"{ratio(med[(a, size)], med[(b, size)]):>12}" for a, b in pairs)
        lines.append(row)
    small = min(args.size_list)
    times = {s: median([r["time_us"] for d in results[s] for r in d["rows"] if r["size"] == small]) for s in present}
    row = f"{size_label(small) + ' B':>8}  " + "  ".join(
        f"{'-' if times[s] is None else format(times[s], '.1f') + ' us':>12}" for s in present)
    if pairs:
        row += "   " + "  ".join(f"{ratio(times[b], times[a]):>12}" for a, b in pairs)
    lines.append(row)
    lines.append(f"{'':>8}  (last line: median time per {size_label(small)}-byte call; its ratios are gloo time / "
                 "ringlink time, above 1 means ringlink is faster)")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8,1K,64K,1M,16M,64M", help="bytes, K/M suffixes (default 8,1K,64K,1M,16M,64M)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="tensor device (cuda: ranks share GPU 0)")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--reps", type=int, default=3, help="repetitions of every system (default 3)")
    p.add_argument("-n", "--iters", type=int, default=20, help="timed calls per size (default 20)")
    p.add_argument("-w", "--warmup", type=int, default=2)
    p.add_argument("--min-time", type=float, default=0.05, help="raise the calls of faster sizes to this many s")
    p.add_argument("--max-time", type=float, default=1.0, help="cap the timed calls of a size at about this many s")
    p.add_argument("--time-limit", type=int, default=600, help="seconds allowed for one run (default 600)")
    p.add_argument("--out", help="also write the summary and every run's JSON into this directory")
    # rank mode (started by the driver)
    p.add_argument("--rank-mode", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank_mode:
        return rank_main(args)

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            sys.exit(f"bench: unknown system {s} (known: {', '.join(SYSTEMS)})")
    try:
        args.size_list = parse_sizes(args.sizes)
    except ValueError as e:
        sys.exit(f"bench: {e}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        return sitting(args, systems, args.out)
    with tempfile.TemporaryDirectory(prefix="ringlink-torch-bench-") as out:  # the runs' JSON, then gone
        return sitting(args, systems, out)


def sitting(args, systems, out):
    """Every repetition of every system, then the summary (also written to OUT/summary.txt)."""
    started = datetime.datetime.now()
    load_before = loadavg()
    results, failures = {}, []
    for rep in range(args.reps):
        order = systems[rep % len(systems):] + systems[:rep % len(systems)]
        for s in order:
            t0 = time.monotonic()
            doc, err = run_system(s, args, args.ranks, os.path.join(out, f"{s}-rep{rep}.json"))
            what = f"{s} rep {rep + 1}/{args.reps}"
            if err:
                failures.append(f"{what}: {err}")
                print(f"bench: {what}: {err}", file=sys.stderr, flush=True)
                continue
            results.setdefault(s, []).append(doc)
            print(f"bench: {what}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    import torch
    elapsed = (datetime.datetime.now() - started).total_seconds()
    header = (f"# ringlink_torch.bench: torch {torch.__version__}, sizes "
              f"{','.join(size_label(s) for s in args.size_list)}, {args.reps} repetitions alternating systems, "
              f"medians\n# host {platform.node()}, {os.cpu_count()} cpus, {started:%Y-%m-%d %H:%M}, {elapsed:.0f} s; "
              f"-n {args.iters} -w {args.warmup} --min-time {args.min_time} --max-time {args.max_time}\n"
              f"# load average (1/5/15 min) before {load_before}, after {loadavg()}")
    summary = summarize(results, systems, args, header)
    if failures:
        summary += "\n\n# runs that failed:\n" + "\n".join(f"#   {f}" for f in failures)
    print(summary)
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(summary + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
