"""What the worker scripts (one process per rank) share: reporting results to the test."""

import json
import os
import traceback


def report(rank, results):
    """Writes this rank's results where launch.py reads them (atomically: a partial file never shows)."""
    out = os.environ["RINGLINK_TEST_OUT"]
    path = os.path.join(out, f"rank-{rank}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f)
    os.rename(path + ".tmp", path)


class Skip(Exception):
    """Raised by a check that cannot run with this torch (an API it lacks)."""


class Checks:
    """Runs named checks, recording "ok" or the failure, so one broken operation does not hide
    the others. A check that raises fails with its traceback."""

    def __init__(self):
        self.results = {}

    def run(self, name, fn, *args):
        if os.environ.get("RINGLINK_TEST_VERBOSE"):
            print("check", name, flush=True)
        try:
            fn(*args)
            self.results[name] = "ok"
        except Skip as e:
            self.results[name] = f"skip: {e}"
        except Exception:
            self.results[name] = traceback.format_exc(limit=6)


def wait_for_reports(ranks, timeout=30.0):
    """Waits (bounded) until every rank in `ranks` has reported. After a failure, survivors must
    not exit before the others noticed it too: a rank that exits looks lost to those still
    deciding who died."""
    import time
    out = os.environ["RINGLINK_TEST_OUT"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(os.path.join(out, f"rank-{r}.json")) for r in ranks):
            return
        time.sleep(0.05)
