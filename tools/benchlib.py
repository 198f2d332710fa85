"""What the Python benchmark tools (compare-peers, p2p-vs-ucx-perftest, ringlink-plot) share:
message sizes as the C++ tools spell them, and the machine's load for the headers of a sitting.

The scripts find this file beside themselves (source and build trees) or, installed, in
share/ringlink beside bin/.
"""

import re

# The spellings of ringlink::parse_byte_size (src/common/byte_size.h): binary multiples K, M,
# G, T in either case, an optional trailing B or iB, a fraction only where it makes whole bytes.
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)([KMGT]?)(I?B)?\s*", re.IGNORECASE)
_UNITS = ["", "K", "M", "G", "T"]


def parse_size(text):
    """'8' -> 8, '64K' -> 65536, '1.5M' -> 1572864, '4KiB' -> 4096; ValueError otherwise."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"not a size: '{text}' (examples: 8, 64K, 1M, 2G)")
    number, unit, _ = m.groups()
    shift = 10 * _UNITS.index(unit.upper())
    if "." in number:
        whole, _, fraction = number.partition(".")
        # Exact: (whole.fraction) * 2^shift is a whole number of bytes or it is refused.
        numerator = int((whole or "0") + fraction) << shift
        denominator = 10 ** len(fraction)
        if numerator % denominator:
            raise ValueError(f"not a whole number of bytes: '{text}'")
        return numerator // denominator
    return int(number) << shift


def parse_size_list(text):
    """A comma-separated list of sizes ('8,64K,1M'); blank items are skipped, so '' is []."""
    return [parse_size(item) for item in text.split(",") if item.strip()]


def size_label(n):
    """The shortest exact spelling, as ringlink-bench prints it: 8, 64K, 3M, 1536."""
    unit = 0
    while unit < len(_UNITS) - 1 and n and n % 1024 == 0:
        n //= 1024
        unit += 1
    return f"{n}{_UNITS[unit]}"


def loadavg():
    """The 1, 5 and 15 minute load averages ('0.52 0.61 0.70'), or '?' where /proc has none."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"
