"""DDP over ringlink launched by torchrun (python -m torch.distributed.run), where torchrun works.
Debian 12's torchrun (torch 1.13 under Python 3.11) dies at start, before any rank runs: then
every test here is skipped and meson reports SKIP."""

import pytest
import torch

from ddp_model import flat_parameters, make_model, train
from launch import launch

DEBIAN_TORCHRUN_FAILURE = "AttributeError: 'NoneType' object has no attribute 'get'"


def test_ddp_under_torchrun():
    r = launch("ddp_worker.py", 2, args=["--backend", "ringlink"], via="torchrun", time_limit=240)
    if r.returncodes != [0] and DEBIAN_TORCHRUN_FAILURE in r.output and not r.results:
        pytest.skip(f"torchrun of torch {torch.__version__} dies at start ({DEBIAN_TORCHRUN_FAILURE})")
    assert r.returncodes == [0], r.describe()
    assert sorted(r.results) == [0, 1], r.describe()
    assert r.results[0]["params"] == r.results[1]["params"]
    torch.set_num_threads(1)
    model = make_model()
    train(model)
    single = flat_parameters(model)
    d = max(abs(a - b) for a, b in zip(r.results[0]["params"], single))
    assert d <= 1e-5, f"max |ringlink under torchrun - single process| = {d}"
