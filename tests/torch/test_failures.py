"""A killed rank gives every other rank a Python exception naming it, promptly, not a hang: over
plain all_reduce (ringlink_torch.PeerLostError) and inside DDP's backward (the Reducer's Future
fails; torch's autograd raises it as RuntimeError with ringlink's message)."""

import signal

from launch import launch


def assert_survivors_named(run, victim, n, typed):
    assert run.returncodes == [128 + signal.SIGKILL], run.describe()  # ringlink-run: the victim's status
    survivors = [r for r in range(n) if r != victim]
    assert sorted(run.results) == survivors, "survivors that reported nothing\n" + run.describe()
    for r in survivors:
        res = run.results[r]
        assert res["error_type"] is not None, f"rank {r} saw no error within 60 s of rank {victim}'s death"
        assert f"rank {victim}" in res["error"], f"rank {r}: {res['error']}"
        assert f"rank {r}" in res["error"], f"rank {r}: {res['error']}"  # and says who raised it
        if typed:
            assert res["peer_lost"] and res["peer"] == victim, res
        assert res.get("seconds", res.get("seconds_after_kill")) < 30, res


def test_killed_rank_all_reduce():
    r = launch("kill_worker.py", 3, args=["2"], keep_going=True, time_limit=120)
    assert_survivors_named(r, 2, 3, typed=True)


def test_killed_rank_during_ddp():
    r = launch("ddp_worker.py", 3, args=["--backend", "ringlink", "--kill-rank", "1", "--kill-step", "3"],
               keep_going=True, time_limit=120)
    assert_survivors_named(r, 1, 3, typed=False)
