"""Shared pieces of the benchmark scripts: interleaved timing and JSON-lines records."""

import json
import os
import statistics
import time


def interleaved_medians(fns, runs, warmup):
    """{label: median ms} timing every fn once per round, round after round.

    Interleaving spreads the noise of a shared machine over all candidates alike, so the ratios
    between them hold even when the absolute figures drift.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in fns}
    for _ in range(runs):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
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
