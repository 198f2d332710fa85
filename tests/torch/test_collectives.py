"""Every operation of the ringlink backend at 2 and 3 ranks, each against a reference computed
in the ranks (collectives_worker.py), launched by ringlink-run (env:// variables)."""

import pytest

from launch import launch

CHECKS = None  # the worker's check names, read from the first launch


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"n{n}")
def run(request):
    r = launch("collectives_worker.py", request.param, time_limit=240)
    assert r.returncodes == [0], r.describe()
    assert sorted(r.results) == list(range(request.param)), "ranks that reported nothing\n" + r.describe()
    return r


def check_names():
    # Kept in step with collectives_worker.py; a check missing from a rank's report fails.
    ops = ["sum", "product", "min", "max", "avg"]
    dtypes = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "int64"]
    names = [f"all_reduce_{o}_{d}" for o in ops for d in dtypes]
    names += ["all_reduce_sum_float32_4M", "all_reduce_sum_empty", "all_reduce_complex64_sum",
              "all_reduce_async_work_and_future", "all_reduce_coalesced", "broadcast_float32", "broadcast_bool",
              "reduce_sum", "reduce_max", "all_gather", "all_gather_into_tensor", "all_gather_coalesced",
              "all_gather_object_broadcast_object_list", "reduce_scatter_sum", "reduce_scatter_max",
              "reduce_scatter_tensor", "barrier", "send_recv_ring", "send_recv_tags", "batch_isend_irecv",
              "not_supported", "bad_arguments", "subgroups", "mismatch_error", "collective_disagreement"]
    return names


@pytest.mark.parametrize("name", check_names())
def test_operation(run, name):
    for rank, res in sorted(run.results.items()):
        outcome = res["checks"].get(name)
        assert outcome is not None, f"rank {rank} did not run {name}"
        if outcome.startswith("skip: "):
            pytest.skip(outcome[6:])
        assert outcome == "ok", f"rank {rank} of {run.results[rank]['ranks']}: {name}:\n{outcome}"


def test_every_check_is_listed(run):
    assert sorted(run.results[0]["checks"]) == sorted(check_names())
