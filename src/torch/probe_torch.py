"""Prints what meson needs to build the ringlink_torch extension against this Python's torch.

One item per line: torch version, major version, _GLIBCXX_USE_CXX11_ABI (0/1), CUDA version
(or "none"), the directory of the loaded libtorch_cpu, then the include directories.
Exits 1 with the reason on stderr when torch cannot be imported.
"""
import os
import sys

try:
    import torch
    import torch.distributed
    from torch.utils import cpp_extension
except Exception as e:  # any import failure means: no usable torch here
    print(f"cannot import torch with {sys.executable}: {e}", file=sys.stderr)
    sys.exit(1)

if not torch.distributed.is_available():
    print(f"torch {torch.__version__} at {os.path.dirname(torch.__file__)} has no torch.distributed", file=sys.stderr)
    sys.exit(1)


def loaded_library_dir(name):
    """The directory the already loaded library `name` came from (pip's torch/lib or the system's)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if os.path.basename(path).startswith(name + ".so"):
                return os.path.dirname(os.path.realpath(path))
    return ""


print(torch.__version__)
print(torch.__version__.split(".")[0])
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(torch.version.cuda or "none")
print(loaded_library_dir("libtorch_cpu"))
for d in cpp_extension.include_paths():
    if os.path.isdir(d):
        print(d)
