"""glibc malloc padding: freed heap memory stays with the process instead of being faulted back."""

import os
import subprocess
import sys
import textwrap

import pytest

from efficientdet_tf.train import host_memory

# In a fresh process: optionally pad first, then a worker thread (a malloc arena of its own, like
# TensorFlow's threads) allocates, touches and frees 50 MB of heap blocks 20 times; prints the
# median page faults of one round.
PROBE = textwrap.dedent("""
    import ctypes, resource, sys, threading
    if sys.argv[1] == "pad":
        from efficientdet_tf.train.host_memory import keep_freed_memory
        print("pad", keep_freed_memory())
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    faults = []
    def work():
        for _ in range(20):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            blocks = [libc.malloc(100_000) for _ in range(500)]  # below the mmap threshold
            for block in blocks:
                ctypes.memset(block, 1, 100_000)
            for block in reversed(blocks):
                libc.free(block)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    print("faults", sorted(faults[1:])[len(faults) // 2])
""")


def _probe(mode, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TOP_PAD_", host_memory.ENV)}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env=dict(environ, **env)).stdout
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_padding_keeps_freed_heap_memory_and_can_be_switched_off():
    plain = _probe("none")["faults"]
    padded = _probe("pad")
    assert padded["pad"] == host_memory.DEFAULT_TOP_PAD
    # 50 MB freed and taken again is about 12,000 pages: faulted back each round without the pad.
    assert plain > 5000 and padded["faults"] < plain / 10
    off = _probe("pad", **{host_memory.ENV: "0"})
    assert off["pad"] == 0 and off["faults"] > 5000
    # glibc's own variable wins: nothing is changed on top of it.
    assert _probe("pad", MALLOC_TOP_PAD_="268435456")["pad"] == 0
