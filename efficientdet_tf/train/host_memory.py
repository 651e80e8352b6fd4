"""glibc malloc padding for training on the CPU: keep freed heap memory instead of faulting it back every step."""

import ctypes
import os
import re
import sys

M_TOP_PAD = -2  # mallopt parameter number (malloc.h)
DEFAULT_TOP_PAD = 256 << 20
ENV = "EFFICIENTDET_TF_MALLOC_TOP_PAD"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class MallocSettingError(ValueError):
    """`$EFFICIENTDET_TF_MALLOC_TOP_PAD` is not a byte count."""


def parse_size(text, name=ENV):
    """Bytes of '268435456', '256M', '256MiB', '512k' or '1G' (binary units); MallocSettingError else."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if not match:
        raise MallocSettingError("%s must be a byte count such as 268435456 or 256M (0 leaves malloc alone), "
                                 "got %r" % (name, text))
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def keep_freed_memory(top_pad=None):
    """Sets glibc's `M_TOP_PAD`: malloc then keeps `top_pad` bytes whenever it grows or trims a heap.

    TensorFlow's CPU allocator is malloc. A training step frees its activations and the next one
    allocates them again; by default glibc hands the freed tops of its heaps back to the kernel and
    takes them again, and every page taken again is a page fault and a zeroed page. During the
    demo's training on 2 cores that was 125,000 faults a second and a third of the CPU spent in the
    kernel; with a 256 MiB pad the step took 369 ms instead of 918 (BENCHMARKS.md). Call it before
    TensorFlow starts its threads: called later it barely helped. The cost is memory kept by the
    process: up to `top_pad` per malloc arena, touched only when used (+10% peak in the demo).

    Process-wide, like every malloc setting: `efficientdet-train` and `efficientdet-demo` call it
    at their start; importing the package never does. `$EFFICIENTDET_TF_MALLOC_TOP_PAD` (bytes, or
    with a K/M/G suffix) overrides `top_pad`, and 0 leaves malloc alone; so does glibc's own
    `MALLOC_TOP_PAD_` when set. Does nothing off Linux or without glibc. Returns the pad set (0 when
    nothing was changed).

    Raises:
      MallocSettingError: the variable is not a byte count (one line naming it).
    """
    if os.environ.get(ENV):
        top_pad = parse_size(os.environ[ENV])
    elif top_pad is None:
        top_pad = DEFAULT_TOP_PAD
    if top_pad <= 0 or "MALLOC_TOP_PAD_" in os.environ or not sys.platform.startswith("linux"):
        return 0
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # raises or is empty where the C library is not glibc
            return 0
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return 0
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return top_pad if mallopt(M_TOP_PAD, int(min(top_pad, 2 ** 31 - 1))) == 1 else 0
