"""The Python benchmark tools: their shared module (sizes, labels, load) and ringlink-plot run
from the build tree, where it must find that module beside itself.

    python_tools_test.py TOOLS_DIR           the module, imported from TOOLS_DIR
    python_tools_test.py TOOLS_DIR --plot    ringlink-plot in TOOLS_DIR draws a PNG
                                             (exit 77 where matplotlib is missing)
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
TOOLS_DIR = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else None
EXIT_SKIP = 77


class CompareSummary(unittest.TestCase):
    """compare-peers' last line names the ratio where ringlink does worst."""

    def setUp(self):
        from importlib.machinery import SourceFileLoader
        import importlib.util
        # Not copied into the build tree: the source tree's copy, beside its benchlib.py.
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "compare-peers")
        loader = SourceFileLoader("compare_peers", path)
        spec = importlib.util.spec_from_loader("compare_peers", loader)
        self.cp = importlib.util.module_from_spec(spec)
        loader.exec_module(self.cp)

    def doc(self, rows):
        return {"rows": [{"size": size, "oop": {"busbw": bw, "time_us": t}} for size, bw, t in rows]}

    def test_names_the_weakest_ratio_among_sizes_and_latency(self):
        class Args:
            mode, collective, reps = "oop", "allreduce", 1
        results = {
            ("ringlink-tcp", 2): [self.doc([(8, 0.001, 10.0), (1 << 20, 2.0, 500.0), (64 << 20, 1.8, 0.0)])],
            ("mpi-tcp", 2): [self.doc([(8, 0.001, 12.0), (1 << 20, 2.5, 400.0), (64 << 20, 1.0, 0.0)])],
        }
        text = self.cp.summarize(results, ["ringlink-tcp", "mpi-tcp"], [8, 1 << 20, 64 << 20], [2], Args, "# h")
        last = text.splitlines()[-1]
        self.assertIn("slowest ratio: 0.80x", last)
        self.assertIn("ringlink-tcp against mpi-tcp, 1M busbw, 2 ranks, out of place", last)
        self.assertIn("1 of 3 ratios below 1.00x", last)

    def test_wire_systems_compare_to_uncompressed_ringlink_outside_the_verdict(self):
        class Args:
            mode, collective, reps, wire = "oop", "allreduce", 1, "bf16"
        results = {
            ("ringlink-tcp", 2): [self.doc([(8, 0.001, 10.0), (64 << 20, 1.0, 0.0)])],
            ("ringlink-tcp-bf16", 2): [self.doc([(8, 0.001, 20.0), (64 << 20, 1.5, 0.0)])],
            ("mpi-tcp", 2): [self.doc([(8, 0.001, 12.0), (64 << 20, 0.9, 0.0)])],
        }
        systems = ["ringlink-tcp", "ringlink-tcp-bf16", "mpi-tcp"]
        text = self.cp.summarize(results, systems, [8, 64 << 20], [2], Args, "# h")
        self.assertIn("tcp-bf16/ringlink-tcp", text)
        self.assertIn("1.50x", text)  # the gain at 64M
        last = text.splitlines()[-1]
        # The 8-byte bf16 time (0.50x of the uncompressed) is not a ratio against a peer.
        self.assertIn("slowest ratio: 1.11x, ringlink-tcp against mpi-tcp, 64M busbw", last)
        cmd, env = self.cp.command("ringlink-tcp-bf16", "/b", 2, ["allreduce"], 60)
        self.assertEqual(env["RINGLINK_WIRE_DTYPE"], "bf16")
        self.assertEqual(env["UCX_TLS"], "tcp")
        self.assertEqual(self.cp.split_wire("ringlink-shm-fp16"), ("ringlink-shm", "fp16"))
        self.assertEqual(self.cp.split_wire("mpi-tcp"), ("mpi-tcp", None))

    def test_says_so_when_nothing_compares(self):
        self.assertIn("none", self.cp.slowest_ratio_line([]))


class Sizes(unittest.TestCase):
    def setUp(self):
        sys.path.insert(0, TOOLS_DIR)
        import benchlib
        self.lib = benchlib

    def tearDown(self):
        sys.path.remove(TOOLS_DIR)

    def test_spellings_of_the_cpp_parser(self):
        cases = {"8": 8, "0": 0, "64K": 65536, "64k": 65536, "1M": 1 << 20, "2G": 2 << 30, "3T": 3 << 40,
                 "1.5K": 1536, "0.5M": 512 << 10, "4KB": 4096, "4KiB": 4096, "100B": 100, " 16M ": 16 << 20,
                 "18446744073709551615": (1 << 64) - 1}
        for text, expected in cases.items():
            self.assertEqual(self.lib.parse_size(text), expected, text)

    def test_refuses_what_the_cpp_parser_refuses(self):
        for text in ["", " ", "-1", "+1", "abc", "1.5", "0.1K", "10X", "1KK", "1KBB", "M", "K1", "nan", "1 K"]:
            with self.assertRaises(ValueError, msg=text):
                self.lib.parse_size(text)

    def test_lists_skip_blank_items(self):
        self.assertEqual(self.lib.parse_size_list("8,64K, 1M"), [8, 65536, 1 << 20])
        self.assertEqual(self.lib.parse_size_list(""), [])
        self.assertEqual(self.lib.parse_size_list("8,,16"), [8, 16])
        with self.assertRaises(ValueError):
            self.lib.parse_size_list("8,x")

    def test_labels_are_the_shortest_exact_spelling(self):
        for n, label in [(8, "8"), (0, "0"), (65536, "64K"), (3 << 20, "3M"), (1536, "1536"), (2 << 30, "2G"),
                         (1 << 40, "1T"), (1 << 50, "1024T")]:
            self.assertEqual(self.lib.size_label(n), label)
            self.assertEqual(self.lib.parse_size(label), n)

    def test_loadavg_has_three_figures(self):
        fields = self.lib.loadavg().split()
        self.assertEqual(len(fields), 3)
        for f in fields:
            float(f)


def run_plot():
    """ringlink-plot from TOOLS_DIR on a two-row allreduce JSON; returns the exit status."""
    doc = {"tool": "ringlink-bench", "label": "test run", "collective": "allreduce", "ranks": 2,
           "rows": [{"size": 8, "count": 2, "oop": {"time_us": 10.0, "algbw": 0.001, "busbw": 0.001}},
                    {"size": 1 << 20, "count": 1 << 18, "oop": {"time_us": 500.0, "algbw": 2.0, "busbw": 2.0}}]}
    with tempfile.TemporaryDirectory() as tmp:
        src, png = os.path.join(tmp, "run.json"), os.path.join(tmp, "run.png")
        with open(src, "w") as f:
            json.dump(doc, f)
        r = subprocess.run([os.path.join(TOOLS_DIR, "ringlink-plot"), "-o", png, src], capture_output=True,
                           text=True, timeout=120)
        if "matplotlib is missing" in r.stderr:
            print(r.stderr.strip())
            return EXIT_SKIP
        if r.returncode != 0:
            print(f"ringlink-plot failed ({r.returncode}): {r.stdout}{r.stderr}")
            return 1
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                print("ringlink-plot did not write a PNG")
                return 1
    print("ringlink-plot wrote a PNG")
    return 0


if __name__ == "__main__":
    if TOOLS_DIR is None:
        sys.exit(__doc__)
    if "--plot" in sys.argv[2:]:
        sys.exit(run_plot())
    unittest.main(argv=[sys.argv[0], "-v"])
