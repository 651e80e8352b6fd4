"""Shared pieces of the benchmark scripts: interleaved timing and JSON-lines records."""

import json
import os
import statistics
import time


def interleaved_medians(fns, runs, warmup, repeat=1):
    """{label: median ms} timing every fn once per round, round after round.

    Interleaving spreads the noise of a shared machine over all candidates alike, so the ratios
    between them hold even when the absolute figures drift. With `repeat` > 1 each round calls a
    candidate `repeat` times in a row and keeps all but the first call: the first one after
    another candidate refills the caches (a batch-8 run before it cost the next candidate up to
    30% on a 2-core machine), which a server that runs one model does not pay.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in fns}
    for _ in range(runs):
        for label, fn in fns.items():
            for call in range(repeat):
                start = time.perf_counter()
                fn()
                if call or repeat == 1:
                    times[label].append((time.perf_counter() - start) * 1000.0)
    return {label: statistics.median(values) for label, values in times.items()}


def recorder(filename):
    """say(**record): prints one JSON line, and appends it to $OUT/<filename> when OUT is set."""
    def say(**record):
        line = json.dumps(record)
        print(line, flush=True)
        if os.environ.get("OUT"):
            with open(os.path.join(os.environ["OUT"], filename), "a") as f:
                f.write(line + "\n")
    return say
