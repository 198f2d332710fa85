"""PyTorch's DistributedDataParallel over ringlink: the small CNN of ddp_model.py trains 20 steps
at 2 ranks (the global batch split) over UCX shared memory, launched with the env:// variables
set by hand. Its parameters match the same run over gloo to 1e-6 and a single process on the
global batch to 1e-5; the two ranks end with identical parameters."""

import pytest
import torch

from ddp_model import flat_parameters, make_model, train
from launch import launch


def ddp_run(backend, device="cpu", env=None):
    r = launch("ddp_worker.py", 2, args=["--backend", backend, "--device", device], via="env", env=env,
               time_limit=240)
    assert r.returncodes == [0, 0], r.describe()
    assert sorted(r.results) == [0, 1], r.describe()
    return r.results


@pytest.fixture(scope="module")
def single_process():
    torch.set_num_threads(1)
    model = make_model()
    losses = train(model)
    return flat_parameters(model), losses


def max_diff(a, b):
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def check_against_references(ringlink, gloo, single):
    params = ringlink[0]["params"]
    assert ringlink[1]["params"] == params, "the ranks' parameters differ"
    assert gloo[1]["params"] == gloo[0]["params"]
    d_gloo = max_diff(params, gloo[0]["params"])
    d_single = max_diff(params, single)
    assert d_gloo <= 1e-6, f"max |ringlink - gloo| = {d_gloo}"
    assert d_single <= 1e-5, f"max |ringlink - single process| = {d_single}"
    # Training happened: the parameters moved and the loss fell.
    assert max_diff(params, flat_parameters(make_model())) > 1e-3
    losses = ringlink[0]["losses"]
    assert len(losses) == 20 and sum(losses[-5:]) < sum(losses[:5]), losses
    print(f"max |ringlink - gloo| = {d_gloo:.3g}, max |ringlink - single process| = {d_single:.3g}")


def test_ddp_matches_gloo_and_single_process(single_process):
    # Over UCX shared memory, the medium a user gets on one host (the collectives run over TCP).
    shm = {"UCX_TLS": "sm,self", "UCX_NET_DEVICES": "all"}
    ringlink = ddp_run("ringlink", env=shm)
    assert ringlink[0]["transport"] == "ucx(sm,self)", ringlink[0]["transport"]
    check_against_references(ringlink, ddp_run("gloo"), single_process[0])
