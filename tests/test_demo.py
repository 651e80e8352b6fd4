"""The README's main job (efficientdet-demo --quick) runs end to end and leaves every artefact."""

import json
import os
import subprocess
import sys

from efficientdet_tf.metrics.coco_metrics import METRIC_KEYS


def test_demo_quick_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-m", "efficientdet_tf.cli.demo", "--quick", "--output_dir=" + str(out)],
                            capture_output=True, text=True, timeout=900, cwd=str(tmp_path), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and summary["train_steps"] == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics) and metrics["num_pictures"] == 8
    assert sorted(metrics["per_class"]) == ["circle", "ring", "square", "star", "triangle"]
    assert os.path.isfile(out / "export" / "1" / "saved_model.pb")
    assert os.path.isfile(out / "model" / "config.yaml")
    for name in ("pr_curve.png", "detections_grid.jpg", "per_class_ap.txt"):
        assert os.path.getsize(out / "eval" / name) > 0, name
    assert len(os.listdir(out / "detections")) == 8 and len(os.listdir(out / "inspect")) == 4
    # It says where each output went.
    for path in ("metrics.json", os.path.join("export", "1"), "detections"):
        assert os.path.join(str(out), path) in result.stdout, path
    # A second run into the same folder is refused in one line instead of mixing two runs.
    again = subprocess.run([sys.executable, "-m", "efficientdet_tf.cli.demo", "--quick", "--output_dir=" + str(out)],
                           capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 1 and "already holds a trained model" in again.stderr
