"""ringlink as a torch.distributed backend.

    import ringlink_torch                        # registers the backend "ringlink"
    torch.distributed.init_process_group("ringlink")

Errors of ringlink arrive as ringlink_torch.Error (a RuntimeError) or one of its subclasses
TimeoutError, PeerLostError, MismatchError, InvalidArgumentError, TransportError; the message
names the rank, the peer and the operation, and so do the attributes rank, peer, operation,
kind and detail. What ringlink does not implement raises NotSupportedError (a
NotImplementedError) whose message starts with "not supported by ringlink:".
"""

import torch
import torch.distributed as _dist

from . import _build_info


def _check_torch_version():
    built = _build_info.TORCH_VERSION.split(".")[:2]
    running = torch.__version__.split(".")[:2]
    if built != running:
        raise ImportError(
            f"ringlink_torch was built against torch {_build_info.TORCH_VERSION} but this Python has torch "
            f"{torch.__version__} ({torch.__file__}); rebuild it with -Dtorch_python= this Python")


_check_torch_version()

from . import _C  # noqa: E402  (after the version check: a mismatched extension fails to load)
from ._C import (  # noqa: E402
    Error,
    InvalidArgumentError,
    MismatchError,
    NotSupportedError,
    PeerLostError,
    ProcessGroupRinglink,
    TimeoutError,
    TransportError,
)
from ._rendezvous import create_process_group  # noqa: E402

BACKEND = "ringlink"
__version__ = _build_info.RINGLINK_VERSION

__all__ = [
    "BACKEND", "Error", "InvalidArgumentError", "MismatchError", "NotSupportedError", "PeerLostError",
    "ProcessGroupRinglink", "TimeoutError", "TransportError", "create_process_group",
]


def _register():
    if hasattr(_dist.Backend, BACKEND.upper()):
        return  # registered already (the module was loaded twice under two names)
    kwargs = {"extended_api": True}
    if _C.torch_version[0] >= 2:
        # torch 2.x wraps the backend in a ProcessGroup per device type: one backend serves both.
        kwargs["devices"] = ["cpu", "cuda"]
    _dist.Backend.register_backend(BACKEND, create_process_group, **kwargs)


_register()
