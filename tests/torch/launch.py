"""Starting the ranks of a worker script for the torch tests, and reading what each reported.

Three launches, as users start jobs: through build/tools/ringlink-run (env:// variables, a random
RINGLINK_JOB_TOKEN); "by hand": this module sets RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT itself; or torchrun. Either way every rank runs
in a process group of its own that is killed at the time limit, and each rank writes its
results as JSON to $RINGLINK_TEST_OUT/rank-N.json (worker_util.report).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = os.environ.get("RINGLINK_TORCH_PYTHON", sys.executable)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """The outcome of one launch: exit statuses, output, and each rank's reported results."""

    def __init__(self, returncodes, output, results, seconds):
        self.returncodes = returncodes  # one per rank, or [status of ringlink-run]
        self.output = output
        self.results = results  # rank -> dict (missing: the rank reported nothing)
        self.seconds = seconds

    def describe(self):
        return f"exit statuses {self.returncodes} after {self.seconds:.1f} s; output:\n{self.output[-6000:]}"


def _base_env(extra):
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
              "RINGLINK_JOB_TOKEN", "TORCHELASTIC_USE_AGENT_STORE"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["OMP_NUM_THREADS"] = "1"  # 2 cores shared by every rank
    env["GLOO_SOCKET_IFNAME"] = "lo"
    env.update(extra or {})
    return env


def _read_results(out_dir, n):
    results = {}
    for r in range(n):
        path = os.path.join(out_dir, f"rank-{r}.json")
        if os.path.exists(path):
            with open(path) as f:
                results[r] = json.load(f)
    return results


def launch(script, n, args=(), env=None, via="ringlink-run", time_limit=180, keep_going=False):
    """Runs `n` ranks of tests/torch/`script` and returns a Run."""
    out_dir = tempfile.mkdtemp(prefix="ringlink-torch-")
    env = _base_env(env)
    env["RINGLINK_TEST_OUT"] = out_dir
    cmd = [PYTHON, os.path.join(HERE, script)] + list(args)
    t0 = time.monotonic()
    if via == "ringlink-run":
        run = [os.environ["RINGLINK_RUN"], "-n", str(n), "--time-limit", str(time_limit)]
        if keep_going:
            run.append("--keep-going")
        p = subprocess.run(run + ["--"] + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=time_limit + 30)
        returncodes, output = [p.returncode], p.stdout
    elif via == "env":
        port = free_port()
        procs, logs = [], []
        for r in range(n):
            renv = dict(env, RANK=str(r), WORLD_SIZE=str(n), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(n),
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            log = tempfile.TemporaryFile(mode="w+")
            procs.append(subprocess.Popen(cmd, env=renv, stdout=log, stderr=subprocess.STDOUT, text=True,
                                          start_new_session=True))
            logs.append(log)
        deadline = t0 + time_limit
        try:
            for p in procs:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            for p in procs:  # everything still running is past its time: the whole session goes
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        returncodes = [p.returncode for p in procs]
        output = ""
        for r, log in enumerate(logs):
            log.seek(0)
            output += "".join(f"[{r}] {line}" for line in log)
            log.close()
    elif via == "torchrun":
        # torch's own launcher; its agent serves the TCPStore on MASTER_PORT.
        run = [PYTHON, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(n),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        p = subprocess.run(run + cmd[1:], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=time_limit, start_new_session=True)
        returncodes, output = [p.returncode], p.stdout
    else:
        raise ValueError(via)
    seconds = time.monotonic() - t0
    results = _read_results(out_dir, n)
    for name in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, name))
    os.rmdir(out_dir)
    return Run(returncodes, output, results, seconds)
