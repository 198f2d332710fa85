"""The backend on CUDA tensors, 2 ranks sharing GPU 0: every operation against its reference, and
DDP against gloo on CUDA and a single process on CUDA. Skipped (meson: SKIP) without a GPU."""

import pytest
import torch

from ddp_model import flat_parameters, make_model, train
from launch import launch
from test_collectives import check_names
from test_ddp import max_diff

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.device_count() > 0),
                                reason="no CUDA device")


@pytest.fixture(scope="module")
def cuda_run():
    r = launch("collectives_worker.py", 2, args=["--device", "cuda"], time_limit=300)
    assert r.returncodes == [0], r.describe()
    assert sorted(r.results) == [0, 1], r.describe()
    return r


@pytest.mark.parametrize("name", check_names())
def test_operation_cuda(cuda_run, name):
    for rank, res in sorted(cuda_run.results.items()):
        outcome = res["checks"].get(name)
        assert outcome is not None, f"rank {rank} did not run {name}"
        if outcome.startswith("skip: "):
            pytest.skip(outcome[6:])
        assert outcome == "ok", f"rank {rank}: {name} on CUDA:\n{outcome}"


def test_ddp_cuda_matches_gloo_and_single_process():
    def run(backend):
        r = launch("ddp_worker.py", 2, args=["--backend", backend, "--device", "cuda"], via="env", time_limit=300)
        assert r.returncodes == [0, 0], r.describe()
        return r.results

    ringlink, gloo = run("ringlink"), run("gloo")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    model = make_model().cuda()
    train(model, device="cuda")
    single = flat_parameters(model)
    params = ringlink[0]["params"]
    assert ringlink[1]["params"] == params, "the ranks' parameters differ"
    assert max_diff(params, gloo[0]["params"]) <= 1e-6
    assert max_diff(params, single) <= 1e-5
