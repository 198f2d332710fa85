"""One rank of the collectives test: every operation of the ringlink backend against a reference
computed here from the inputs every rank can construct (rank r's input is a known function of r).

    collectives_worker.py [--device cpu|cuda]

Values are small integers, exact in every element type, so sums, products, minima and maxima
have one right answer whatever order ranks combine in; avg is compared with a tolerance.
Reports {check name: "ok" | traceback}, plus "ranks" and "transport".
"""

import argparse
import sys

import torch
import torch.distributed as dist

import ringlink_torch
from worker_util import Checks, Skip, report

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.int32,
          torch.int64]
OPS = {"sum": dist.ReduceOp.SUM, "product": dist.ReduceOp.PRODUCT, "min": dist.ReduceOp.MIN,
       "max": dist.ReduceOp.MAX, "avg": dist.ReduceOp.AVG}

p = argparse.ArgumentParser()
p.add_argument("--device", default="cpu")
args = p.parse_args()

dist.init_process_group("ringlink")
rank, n = dist.get_rank(), dist.get_world_size()
dev = torch.device(args.device)
if dev.type == "cuda":
    torch.cuda.set_device(0)  # the ranks share one GPU
checks = Checks()


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def rank_input(r, count, dtype, op="sum", salt=0):
    """Rank r's input: small integers; products stay within int8 (at most 2^ranks)."""
    i = torch.arange(count, dtype=torch.int64)
    if op == "product":
        v = (i + r + salt) % 2 + 1
    else:
        v = (i * 3 + r * 5 + salt) % 11 + (1 if op != "min" else 0)
    return v.to(dtype).to(dev)


def expected_reduction(count, dtype, op, salt=0):
    stack = torch.stack([rank_input(r, count, dtype, op, salt).to(torch.float64).cpu() for r in range(n)])
    if op == "sum":
        e = stack.sum(0)
    elif op == "product":
        e = stack.prod(0)
    elif op == "min":
        e = stack.min(0).values
    elif op == "max":
        e = stack.max(0).values
    else:  # avg: float division; integers truncate toward zero, as ringlink documents
        e = stack.sum(0) / n
        if not dtype.is_floating_point:
            e = torch.trunc(e)
    return e


def assert_equal(got, want, what, dtype=None):
    got = got.detach().cpu().to(torch.float64)
    want = want.cpu().to(torch.float64)
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if dtype in (torch.float16, torch.bfloat16):
        ok = torch.allclose(got, want, rtol=1e-2, atol=1e-2)
    elif dtype is not None and dtype.is_floating_point:
        ok = torch.allclose(got, want, rtol=1e-6, atol=1e-6)
    else:
        ok = torch.equal(got, want)
    if not ok:
        bad = (got - want).abs().argmax().item()
        raise AssertionError(f"{what}: element {bad} is {got.flatten()[bad].item()}, expected "
                             f"{want.flatten()[bad].item()}")


# ---- all_reduce: every operator and element type ---------------------------------------------

def check_all_reduce(op, dtype, count):
    t = rank_input(rank, count, dtype, op)
    dist.all_reduce(t, op=OPS[op])
    assert t.dtype == dtype
    assert_equal(t, expected_reduction(count, dtype, op), f"all_reduce {op} {dtype_name(dtype)}", dtype)


for op in OPS:
    for dtype in DTYPES:
        checks.run(f"all_reduce_{op}_{dtype_name(dtype)}", check_all_reduce, op, dtype, 1000)
# Large enough for the chunk pipeline (several chunks per rank).
checks.run("all_reduce_sum_float32_4M", check_all_reduce, "sum", torch.float32, 1 << 20)
checks.run("all_reduce_sum_empty", check_all_reduce, "sum", torch.float32, 0)


def check_all_reduce_complex():
    t = torch.complex(rank_input(rank, 64, torch.float32), rank_input(rank, 64, torch.float32, salt=3))
    dist.all_reduce(t)
    want_re = expected_reduction(64, torch.float32, "sum")
    want_im = expected_reduction(64, torch.float32, "sum", salt=3)
    assert_equal(t.real, want_re, "complex real", torch.float32)
    assert_equal(t.imag, want_im, "complex imag", torch.float32)


checks.run("all_reduce_complex64_sum", check_all_reduce_complex)


def check_all_reduce_async():
    t = rank_input(rank, 4096, torch.float32)
    work = dist.all_reduce(t, async_op=True)
    fut = work.get_future()
    seen = []
    chained = fut.then(lambda f: seen.append(f.value()[0].sum().item()) or f.value()[0] * 2)
    assert work.wait() is True
    assert work.is_completed() and work.is_success()
    want = expected_reduction(4096, torch.float32, "sum")
    assert_equal(fut.wait()[0], want, "future value", torch.float32)
    assert_equal(chained.wait(), want * 2, "chained future", torch.float32)
    assert seen and abs(seen[0] - want.sum().item()) < 1e-3, f"callback saw {seen}"
    # Several in flight at once, waited on in reverse order.
    ts = [rank_input(rank, 1000 + k, torch.float32, salt=k) for k in range(8)]
    works = [dist.all_reduce(x, async_op=True) for x in ts]
    for k in reversed(range(8)):
        works[k].wait()
        assert_equal(ts[k], expected_reduction(1000 + k, torch.float32, "sum", salt=k), f"in flight {k}",
                     torch.float32)


checks.run("all_reduce_async_work_and_future", check_all_reduce_async)


def needs(name):
    if not hasattr(dist, name):
        raise Skip(f"torch {torch.__version__} has no torch.distributed.{name}")


def check_all_reduce_coalesced():
    needs("all_reduce_coalesced")
    a = rank_input(rank, 300, torch.float32)
    b = rank_input(rank, 77, torch.float32, salt=1)
    dist.all_reduce_coalesced([a, b], op=dist.ReduceOp.MAX)
    assert_equal(a, expected_reduction(300, torch.float32, "max"), "coalesced a", torch.float32)
    assert_equal(b, expected_reduction(77, torch.float32, "max", salt=1), "coalesced b", torch.float32)


checks.run("all_reduce_coalesced", check_all_reduce_coalesced)

# ---- broadcast, reduce -----------------------------------------------------------------------


def check_broadcast(dtype):
    # Assertions after the loop: every rank issues the same calls even when one rank's data is wrong.
    wrong = []
    for root in range(n):
        t = rank_input(rank, 513, torch.float32, salt=root).to(dtype) if dtype != torch.bool else \
            (rank_input(rank, 513, torch.int64, salt=root) % 2 == 0)
        want = rank_input(root, 513, torch.float32, salt=root).to(dtype) if dtype != torch.bool else \
            (rank_input(root, 513, torch.int64, salt=root) % 2 == 0)
        dist.broadcast(t, src=root)
        if not torch.equal(t.cpu(), want.cpu()):
            wrong.append(root)
    assert not wrong, f"wrong data broadcast from roots {wrong}"


checks.run("broadcast_float32", check_broadcast, torch.float32)
checks.run("broadcast_bool", check_broadcast, torch.bool)  # data movement takes any dtype


def check_reduce(op):
    mine = None
    for root in range(n):
        t = rank_input(rank, 2000, torch.float32, op, salt=root)
        dist.reduce(t, dst=root, op=OPS[op])
        if rank == root:
            mine = t
    assert_equal(mine, expected_reduction(2000, torch.float32, op, salt=rank), f"reduce {op} to {rank}", torch.float32)


checks.run("reduce_sum", check_reduce, "sum")
checks.run("reduce_max", check_reduce, "max")

# ---- all_gather, reduce_scatter ---------------------------------------------------------------


def check_all_gather():
    x = rank_input(rank, 37, torch.int32).reshape(37, 1)
    out = [torch.empty(37, 1, dtype=torch.int32, device=dev) for _ in range(n)]
    dist.all_gather(out, x)
    for r in range(n):
        assert_equal(out[r], rank_input(r, 37, torch.int32).reshape(37, 1), f"all_gather block {r}")


def check_all_gather_into_tensor():
    x = rank_input(rank, 1000, torch.float16)
    out = torch.empty(n * 1000, dtype=torch.float16, device=dev)
    dist.all_gather_into_tensor(out, x)
    want = torch.cat([rank_input(r, 1000, torch.float16) for r in range(n)])
    assert_equal(out, want, "all_gather_into_tensor")


def check_all_gather_coalesced():
    needs("all_gather_coalesced")
    a, b = rank_input(rank, 5, torch.float32), rank_input(rank, 9, torch.float32, salt=2)  # one dtype, as torch asks
    out = [[torch.empty_like(a), torch.empty_like(b)] for _ in range(n)]
    dist.all_gather_coalesced(out, [a, b])
    for r in range(n):
        assert_equal(out[r][0], rank_input(r, 5, torch.float32), f"coalesced a from {r}")
        assert_equal(out[r][1], rank_input(r, 9, torch.float32, salt=2), f"coalesced b from {r}")


def check_all_gather_object():
    objs = [None] * n
    dist.all_gather_object(objs, {"rank": rank, "name": f"r{rank}"})
    assert objs == [{"rank": r, "name": f"r{r}"} for r in range(n)], objs
    lst = [f"from {rank}", rank]
    dist.broadcast_object_list(lst, src=n - 1)
    assert lst == [f"from {n - 1}", n - 1], lst


checks.run("all_gather", check_all_gather)
checks.run("all_gather_into_tensor", check_all_gather_into_tensor)
checks.run("all_gather_coalesced", check_all_gather_coalesced)
checks.run("all_gather_object_broadcast_object_list", check_all_gather_object)


def check_reduce_scatter(op):
    count = 300
    inputs = [rank_input(rank, count, torch.float32, op, salt=k) for k in range(n)]
    out = torch.empty(count, device=dev)
    dist.reduce_scatter(out, inputs, op=OPS[op])
    assert_equal(out, expected_reduction(count, torch.float32, op, salt=rank), f"reduce_scatter {op}", torch.float32)


def check_reduce_scatter_tensor():
    count = 1024
    full = torch.cat([rank_input(rank, count, torch.int64, salt=k) for k in range(n)])
    out = torch.empty(count, dtype=torch.int64, device=dev)
    dist.reduce_scatter_tensor(out, full)
    assert_equal(out, expected_reduction(count, torch.int64, "sum", salt=rank), "reduce_scatter_tensor")


checks.run("reduce_scatter_sum", check_reduce_scatter, "sum")
checks.run("reduce_scatter_max", check_reduce_scatter, "max")
checks.run("reduce_scatter_tensor", check_reduce_scatter_tensor)

# ---- barrier, point to point ------------------------------------------------------------------

checks.run("barrier", lambda: dist.barrier())


def check_send_recv_ring():
    right, left = (rank + 1) % n, (rank - 1) % n
    out = rank_input(rank, 4099, torch.float64)
    got = torch.empty(4099, dtype=torch.float64, device=dev)
    reqs = [dist.isend(out, right), dist.irecv(got, left)]
    for q in reqs:
        q.wait()
    assert_equal(got, rank_input(left, 4099, torch.float64), "ring")


def check_send_recv_tags():
    # Two messages to the same peer, received in the opposite order: tags keep them apart.
    if rank == 0:
        dist.send(torch.full((3,), 1.0, device=dev), 1, tag=1)
        dist.send(torch.full((5,), 2.0, device=dev), 1, tag=2)
    elif rank == 1:
        b, a = torch.empty(5, device=dev), torch.empty(3, device=dev)
        w = dist.irecv(b, 0, tag=2)
        dist.recv(a, 0, tag=1)
        w.wait()
        assert a.eq(1).all() and b.eq(2).all(), (a, b)


def check_batch_isend_irecv():
    right, left = (rank + 1) % n, (rank - 1) % n
    send = rank_input(rank, 100, torch.int32)
    recv = torch.empty(100, dtype=torch.int32, device=dev)
    ops = [dist.P2POp(dist.isend, send, right), dist.P2POp(dist.irecv, recv, left)]
    for q in dist.batch_isend_irecv(ops):
        q.wait()
    assert_equal(recv, rank_input(left, 100, torch.int32), "batch_isend_irecv")


checks.run("send_recv_ring", check_send_recv_ring)
checks.run("send_recv_tags", check_send_recv_tags)
checks.run("batch_isend_irecv", check_batch_isend_irecv)

# ---- what ringlink does not do: a clear error on every rank, nothing sent ---------------------


def expect_not_supported(fn, words):
    try:
        fn()
    except ringlink_torch.NotSupportedError as e:
        assert str(e).startswith("not supported by ringlink: "), str(e)
        assert words in str(e), f"{words!r} not in {str(e)!r}"
        return
    raise AssertionError("no NotSupportedError")


def check_not_supported():
    t = torch.ones(4, device=dev)
    expect_not_supported(lambda: dist.all_reduce(t, op=dist.ReduceOp.BAND), "BAND")
    expect_not_supported(lambda: dist.all_reduce(torch.ones(4, dtype=torch.int16, device=dev)), "int16")
    expect_not_supported(lambda: dist.all_reduce(torch.ones(4, dtype=torch.bool, device=dev)), "bool")
    expect_not_supported(lambda: dist.gather(t, [torch.empty_like(t) for _ in range(n)] if rank == 0 else None),
                         "gather")
    expect_not_supported(lambda: dist.scatter(t, [t.clone() for _ in range(n)] if rank == 0 else None), "scatter")
    expect_not_supported(lambda: dist.all_to_all([t.clone() for _ in range(n)], [t.clone() for _ in range(n)]),
                         "all_to_all")
    expect_not_supported(lambda: dist.recv(t), "any source")
    # The group still works afterwards: nothing was issued.
    check_all_reduce("sum", torch.float32, 10)


checks.run("not_supported", check_not_supported)


def expect_invalid(fn, words):
    try:
        fn()
    except ringlink_torch.InvalidArgumentError as e:
        assert e.rank == rank and words in str(e), (e.rank, str(e))
        return
    raise AssertionError(f"no InvalidArgumentError ({words})")


def check_bad_arguments():
    # Refused on every rank at the call, before anything is sent.
    m = torch.ones(4, 6, device=dev)
    expect_invalid(lambda: dist.all_reduce(m.t()), "not contiguous")
    expect_invalid(lambda: dist.all_gather([torch.empty(3, device=dev)], torch.ones(3, device=dev)),
                   f"expected {n}")
    expect_invalid(lambda: dist.all_gather_into_tensor(torch.empty(n * 3 + 1, device=dev), torch.ones(3, device=dev)),
                   "WORLD_SIZE")
    expect_invalid(lambda: dist.send(torch.ones(2, device=dev), rank), "itself")
    expect_invalid(lambda: dist.broadcast(torch.ones(2, device=dev), src=n), "out of range")
    check_all_reduce("sum", torch.float32, 10)


checks.run("bad_arguments", check_bad_arguments)

# ---- subgroups ------------------------------------------------------------------------------


def check_subgroups():
    everyone = dist.new_group(backend="ringlink")
    t = rank_input(rank, 50, torch.float32)
    dist.all_reduce(t, group=everyone)
    assert_equal(t, expected_reduction(50, torch.float32, "sum"), "new_group(all)", torch.float32)
    if n < 3:
        return
    # Overlapping subgroups: rank 1 is in both, ranks 0 and 2 in one each, so the members have
    # created different numbers of communicators when the second one is made.
    wrong = []
    for members in ([0, 1], [1, 2]):
        g = dist.new_group(members, backend="ringlink")
        if rank in members:
            t = torch.full((8,), float(rank + 1), device=dev)
            dist.all_reduce(t, group=g)
            want = float(sum(m + 1 for m in members))
            if not t.eq(want).all():
                wrong.append(f"group {members}: {t.tolist()}, expected {want}")
    assert not wrong, wrong


checks.run("subgroups", check_subgroups)

# ---- errors: ringlink's, typed, naming ranks -------------------------------------------------


def check_mismatch_error():
    # A message larger than the receive posted for it: MismatchError on the receiver, naming the
    # sender. (Its own group: a communicator that failed stays failed.)
    g = dist.new_group(backend="ringlink")
    error = None
    if rank == 0:
        dist.send(torch.ones(16, device=dev), 1, group=g)
    elif rank == 1:
        try:
            dist.recv(torch.empty(8, device=dev), 0, group=g)
        except ringlink_torch.MismatchError as e:
            error = e
    check_all_reduce("sum", torch.float32, 10)  # the default group is unaffected
    if rank == 1:
        assert error is not None, "a 64-byte message fit a 32-byte receive"
        assert isinstance(error, RuntimeError) and error.rank == 1 and error.peer == 0, (error.rank, error.peer)
        assert "rank 1" in str(error) and "rank 0" in str(error), str(error)


def check_collective_disagreement():
    # Ranks issuing different counts: whoever detects it raises MismatchError; a rank left waiting
    # on a peer that is alive but silent raises TimeoutError once the group's timeout passes.
    # Either way a typed error naming ranks, never a wrong result or a hang.
    import datetime
    g = dist.new_group(backend="ringlink", timeout=datetime.timedelta(seconds=4))
    t = torch.ones(10 if rank == 0 else 20, device=dev)
    error = None
    try:
        dist.all_reduce(t, group=g)
    except ringlink_torch.Error as e:
        error = e
    # Every rank issues the same calls on the default group whatever happened above (a rank that
    # skipped one would desynchronize the group).
    check_all_reduce("sum", torch.float32, 10)
    assert error is not None, f"ranks disagreeing on the count raised nothing; this rank holds {t.tolist()}"
    assert isinstance(error, (ringlink_torch.MismatchError, ringlink_torch.TimeoutError)), type(error)
    assert "rank" in str(error), str(error)


checks.run("mismatch_error", check_mismatch_error)
checks.run("collective_disagreement", check_collective_disagreement)

pg = dist.distributed_c10d._get_default_group()
transport = getattr(pg, "transport", None) or getattr(pg._get_backend(torch.device("cpu")), "transport", "?")
dist.barrier()
report(rank, {"checks": checks.results, "ranks": n, "transport": transport})
dist.destroy_process_group()
sys.exit(0)
