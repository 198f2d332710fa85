"""The creator torch calls for each process group of backend "ringlink".

The ranks meet through ringlink's own rendezvous: group rank 0 serves ringlink's store on a free
port, every rank connects to it, proves it knows the job token (RINGLINK_JOB_TOKEN, by
challenge-response: the token itself never travels) and exchanges transport addresses there.
torch's Store (the one torch already uses for this group, e.g. the TCPStore on MASTER_PORT) only
carries where that store is: "order host port", published by group rank 0. The job token never
goes into torch's Store, whose contents anyone who can reach it may read.

`order`: ringlink matches a process's communicators with the other ranks' by creation order. A
rank that is in fewer groups than another has created fewer, so each member reports its count,
rank 0 publishes the largest, and everyone first pads up to it (one-rank communicators).
"""

import datetime
import socket
import time
import warnings

from . import _C

_ADDRESS_KEY = "ringlink/address"


def _milliseconds(timeout):
    if isinstance(timeout, datetime.timedelta):
        return int(timeout.total_seconds() * 1000)
    return int(float(timeout) * 1000)  # a duration in seconds (torch's chrono caster gives either)


def _timeout_error(rank, peer, what, ms):
    e = _C.TimeoutError(f"ringlink rank {rank}: rendezvous: {what} within {ms} ms "
                        f"(RINGLINK_CONNECT_TIMEOUT_MS); is rank {peer} of this group alive and creating it too?")
    e.kind, e.rank, e.peer, e.operation, e.detail = "timeout", rank, peer, "rendezvous", what
    return e


class _Deadline:
    def __init__(self, ms):
        self.ms = ms
        self.at = time.monotonic() + ms / 1000

    def left(self):
        # At least 1 ms: torch's Store reads a zero timeout as "wait forever".
        return datetime.timedelta(milliseconds=max(1, int((self.at - time.monotonic()) * 1000)))


def _get(store, key, deadline, rank, peer, what):
    """store.get bounded by the rendezvous deadline (torch's own get waits for the store's
    timeout, often 30 minutes)."""
    try:
        store.wait([key], deadline.left())
    except RuntimeError as e:
        if "imeout" in str(e):
            raise _timeout_error(rank, peer, what, deadline.ms) from e
        raise
    return store.get(key).decode()


def _is_loopback(host):
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


def _advertised_host(env):
    """The address other ranks reach this host by: the one it uses itself towards MASTER_ADDR."""
    master = env["master_addr"]
    if master:
        if _is_loopback(master):
            return "127.0.0.1"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((socket.gethostbyname(master), 9))  # UDP: chooses the route, sends nothing
                return s.getsockname()[0]
        except OSError:
            pass
    return socket.gethostbyname(socket.gethostname())


def _free_port(host):
    bind = "127.0.0.1" if _is_loopback(host) else "0.0.0.0"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((bind, 0))
        return s.getsockname()[1]


def _placement(store, rank, size, global_ranks, env, deadline):
    """(local_rank, local_size) of this rank among the group's ranks on its host."""
    world = env["world_size"]
    if world > 0 and env["local_world_size"] > 0:
        whole_job = (not global_ranks or len(global_ranks) == world) and size == world
        if whole_job and env["local_rank"] >= 0:
            return env["local_rank"], env["local_world_size"]
        if env["local_world_size"] == world:
            return rank, size  # every rank of the job runs on this host
    # A subgroup spread over hosts (or no launcher's variables): ask the members.
    host = socket.gethostname()
    store.set(f"ringlink/host/{rank}", host)
    hosts = [_get(store, f"ringlink/host/{r}", deadline, rank, r, f"rank {r} did not say which host it runs on")
             for r in range(size)]
    same = [r for r in range(size) if hosts[r] == host]
    return same.index(rank), len(same)


# How far behind another member a process may be in communicators created; a larger count read
# from the Store is refused rather than padded to (it would mean creating that many).
_MAX_PADDING = 4096


def _invalid(rank, peer, what):
    e = _C.InvalidArgumentError(f"ringlink rank {rank}: rendezvous: {what}")
    e.kind, e.rank, e.peer, e.operation, e.detail = "invalid argument", rank, peer, "rendezvous", what
    return e


def _count(text, rank, peer, mine):
    """A member's communicator count as read from torch's Store, checked before it sizes anything."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0 or n > mine + _MAX_PADDING:
        raise _invalid(rank, peer, f"rank {peer} reported {text!r} communicators created (this rank: {mine})")
    return n


def _address(value, rank, mine):
    """"order host port" as group rank 0 published it, checked."""
    parts = value.split(" ")
    if len(parts) != 3 or not parts[1] or not parts[2].isdigit() or not 0 < int(parts[2]) < 65536:
        raise _invalid(rank, 0, f"group rank 0 published {value!r}, not 'order host port'")
    return parts[1], int(parts[2]), _count(parts[0], rank, 0, mine)


def _meet(store, rank, size, env, deadline):
    """Returns (host, port, order): where group rank 0 serves ringlink's store, and the creation
    order every member's communicator for this group takes."""
    created = _C.communicators_created()
    store.set(f"ringlink/created/{rank}", str(created))
    if rank == 0:
        order = created
        for r in range(1, size):
            order = max(order, _count(_get(store, f"ringlink/created/{r}", deadline, rank, r,
                                            f"rank {r} did not join the group"), rank, r, created))
        host = _advertised_host(env)
        port = _free_port(host)
        store.set(_ADDRESS_KEY, f"{order} {host} {port}")
        return host, port, order
    value = _get(store, _ADDRESS_KEY, deadline, rank, 0, "group rank 0 did not publish ringlink's store address")
    return _address(value, rank, created)


def create_process_group(dist_opts, pg_options=None):
    """torch's extended-API creator: (_DistributedBackendOptions, backend options)."""
    if pg_options is not None:
        warnings.warn("ringlink ignores pg_options: it is configured by its RINGLINK_* variables", stacklevel=2)
    store = dist_opts.store
    rank, size = int(dist_opts.group_rank), int(dist_opts.group_size)
    timeout_ms = _milliseconds(dist_opts.timeout)
    env = _C.environment()
    if size == 1:
        return _C.ProcessGroupRinglink.create(0, 1, 0, 1, "127.0.0.1", 0, timeout_ms)
    deadline = _Deadline(env["connect_timeout_ms"])  # for the whole rendezvous, as ringlink's own join
    local_rank, local_size = _placement(store, rank, size, list(dist_opts.global_ranks_in_group), env, deadline)
    host, port, order = _meet(store, rank, size, env, deadline)
    _C.pad_communicators(order)
    return _C.ProcessGroupRinglink.create(rank, size, local_rank, local_size, host, port, timeout_ms)
