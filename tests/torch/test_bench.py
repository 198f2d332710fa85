"""The benchmark runs and prints its table: a row per size with a figure for every system and
the ratios to gloo (a smoke test: figures are never judged here)."""

import os
import re
import subprocess

from launch import PYTHON


def test_bench_prints_every_size_and_ratio():
    sizes = ["8", "64K"]
    p = subprocess.run([PYTHON, "-m", "ringlink_torch.bench", "--sizes", ",".join(sizes), "--reps", "1", "-n", "2",
                        "-w", "1", "--min-time", "0", "--max-time", "0.2", "--time-limit", "120"],
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert any(l.startswith("# load average") for l in lines), p.stdout
    head = next(l for l in lines if l.strip().startswith("size"))
    for col in ("ringlink-tcp", "ringlink", "gloo", "rl-tcp/gloo", "rl/gloo"):
        assert col in head.split(), head
    for s in sizes:
        row = next((l for l in lines if l.split() and l.split()[0] == s), None)
        assert row is not None, f"no row for {s}:\n{p.stdout}"
        cells = row.split()
        assert all(re.fullmatch(r"\d+\.\d+", c) for c in cells[1:4]), row  # a figure per system
        assert all(re.fullmatch(r"\d+\.\d+x", c) for c in cells[4:6]), row  # and both ratios
