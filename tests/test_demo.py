"""The README's main job (efficientdet-demo) runs end to end and leaves its artefacts."""

import json
import os
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path, d0_reference_dir):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "efficientdet_tf.cli.demo", "--output_dir=" + str(out),
                             "--num_train=8", "--num_val=2", "--checkpoint=" + d0_reference_dir],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_records"] == 8
    assert all(p > 0 for p in summary["positives_per_picture"])
    assert summary["max_score_difference"] < 1e-4
    assert os.path.isfile(os.path.join(summary["saved_model"], "saved_model.pb"))
    detections = json.loads((out / "detections" / "detections.json").read_text())
    assert {d["image_id"] for d in detections} == {1, 2}
    assert len(os.listdir(out / "inspect")) == 4
