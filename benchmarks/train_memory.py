"""Peak memory and step time of training with and without gradient accumulation or recompute, one fresh process per setting.

    python -m benchmarks.train_memory [--model efficientdet-d0] [--settings 8x1,8x4,2x1,2x1r] [--steps 4]

Each setting `BxK` trains `--model` at its own input size with `train.batch_size=B` and
`train.accumulation_steps=K` (micro-batches of B/K pictures), with `train.recompute` where the
setting ends in 'r' (`2x1r`), for `--steps` steps on synthetic shapes
records, in a fresh Python process, through `train()`; it reports the process's peak resident
memory (VmHWM: on a CPU, activations live there) and the median time of the steps after the first.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
from efficientdet_tf.train.host_memory import keep_freed_memory
keep_freed_memory()
from efficientdet_tf.config import get_config
from efficientdet_tf.train.actions import Action
from efficientdet_tf.train.trainer import train

model, records, model_dir, batch, accumulation, steps, recompute = sys.argv[1:8]
times = []

class Clock(Action):
    def next_step(self, step):
        return step + 1
    def due(self, run):
        return True
    def __call__(self, run):
        times.append(time.perf_counter())

config = get_config(model, {"num_classes": 5, "train.batch_size": int(batch),
                            "train.accumulation_steps": int(accumulation), "train.recompute": recompute == "1"})
train(config, model_dir, train_file_pattern=records, train_steps=int(steps), save_every=10 ** 6,
      progress=False, actions=(Clock(),))
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
gaps = sorted(b - a for a, b in zip(times, times[1:]))
print("RESULT " + json.dumps({"peak_mib": peak / 1024, "step_s": gaps[len(gaps) // 2] if gaps else None}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientdet-d0")
    parser.add_argument("--settings", default="8x1,8x4,2x1", help="batch x accumulation steps, comma separated")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    from benchmarks.shapes import shapes_records

    root = tempfile.mkdtemp(prefix="train_memory_")
    records = shapes_records(root)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for index, setting in enumerate(args.settings.split(",")):
        recompute = setting.endswith("r")
        batch, accumulation = setting.rstrip("r").split("x")
        run = subprocess.run([sys.executable, "-c", CHILD, args.model, records, os.path.join(root, "m%d" % index),
                              batch, accumulation, str(args.steps),
                              "1" if recompute else "0"], capture_output=True, text=True, env=env)
        line = next((line for line in run.stdout.splitlines() if line.startswith("RESULT ")), None)
        if run.returncode or line is None:
            print(json.dumps({"setting": setting, "error": run.stderr.strip().splitlines()[-1:]}))
            continue
        result = json.loads(line[len("RESULT "):])
        print(json.dumps({"model": args.model, "batch": int(batch), "accumulation_steps": int(accumulation),
                          "micro_batch": int(batch) // int(accumulation), "recompute": recompute,
                          "peak_mib": round(result["peak_mib"]),
                          "median_step_s": round(result["step_s"], 3) if result["step_s"] else None}), flush=True)


if __name__ == "__main__":
    main()
