"""The package in one process: registration, a one-rank group, the Work API, the environment
read through ringlink's own reader, and the rendezvous deadline when a peer never comes."""

import datetime
import socket
import time

import pytest
import torch
import torch.distributed as dist

import ringlink_torch
from launch import free_port


def test_import_registers_the_backend():
    assert dist.Backend("ringlink") == "ringlink"
    assert "RINGLINK" in dist.Backend._plugins
    assert issubclass(ringlink_torch.Error, RuntimeError)
    for name in ("TimeoutError", "PeerLostError", "MismatchError", "InvalidArgumentError", "TransportError"):
        assert issubclass(getattr(ringlink_torch, name), ringlink_torch.Error)
    assert issubclass(ringlink_torch.NotSupportedError, NotImplementedError)
    assert ringlink_torch._C.torch_version[0] == int(torch.__version__.split(".")[0])


def test_one_rank_group_without_launcher_variables():
    # tcp:// init: no RANK/WORLD_SIZE in the environment; torch passes them to the creator.
    for _ in range(2):  # and again after destroy_process_group: a fresh communicator
        dist.init_process_group("ringlink", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
        assert dist.get_backend() == "ringlink"
        t = torch.arange(6, dtype=torch.float64)
        w = dist.all_reduce(t, op=dist.ReduceOp.AVG, async_op=True)
        assert w.wait() and w.is_completed() and w.is_success()
        assert torch.equal(w.get_future().wait()[0], torch.arange(6, dtype=torch.float64))
        out = [torch.empty(6, dtype=torch.float64)]
        dist.all_gather(out, t)
        assert torch.equal(out[0], t)
        dist.barrier()
        dist.destroy_process_group()


def test_environment_is_read_by_ringlink(monkeypatch):
    monkeypatch.setenv("RINGLINK_CONNECT_TIMEOUT_MS", "1234")
    assert ringlink_torch._C.environment()["connect_timeout_ms"] == 1234
    monkeypatch.setenv("RINGLINK_CONNECT_TIMEOUT_MS", "soon")
    with pytest.raises(ringlink_torch.InvalidArgumentError, match="RINGLINK_CONNECT_TIMEOUT_MS"):
        ringlink_torch._C.environment()


def backend_options(store, rank, size):
    opts = torch._C._distributed_c10d._DistributedBackendOptions()
    opts.store = store
    opts.group_rank = rank
    opts.group_size = size
    opts.timeout = datetime.timedelta(seconds=30)
    opts.group_id = "test"
    opts.global_ranks_in_group = []
    return opts


@pytest.mark.parametrize("rank", [0, 1])
def test_rendezvous_deadline_names_the_missing_rank(monkeypatch, rank):
    # A group of 2 of which only this rank ever arrives: a TimeoutError naming the other rank
    # once RINGLINK_CONNECT_TIMEOUT_MS has passed, not torch's 30-minute store wait.
    monkeypatch.setenv("RINGLINK_CONNECT_TIMEOUT_MS", "800")
    t0 = time.monotonic()
    with pytest.raises(ringlink_torch.TimeoutError) as e:
        ringlink_torch.create_process_group(backend_options(dist.HashStore(), rank, 2))
    assert time.monotonic() - t0 < 20
    other = 1 - rank
    assert e.value.rank == rank and e.value.peer == other
    assert f"rank {other}" in str(e.value) and "800 ms" in str(e.value), str(e.value)


@pytest.mark.parametrize("published", ["99999999 127.0.0.1 4000", "0 127.0.0.1 70000", "garbage"])
def test_rendezvous_refuses_what_it_cannot_use(monkeypatch, published):
    # What group rank 0 published in torch's Store is checked before it sizes or addresses
    # anything: a huge count would mean creating that many communicators.
    monkeypatch.setenv("RINGLINK_CONNECT_TIMEOUT_MS", "2000")
    store = dist.HashStore()
    store.set("ringlink/host/0", socket.gethostname())  # where rank 0 would say it runs
    store.set("ringlink/address", published)
    with pytest.raises(ringlink_torch.InvalidArgumentError, match="rendezvous") as e:
        ringlink_torch.create_process_group(backend_options(store, 1, 2))
    assert e.value.rank == 1 and e.value.peer == 0
