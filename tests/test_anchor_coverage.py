"""Anchor coverage: exact best IoUs, the search on boxes the default anchors miss, the report and the training warning."""

import numpy as np
import pytest

from efficientdet_tf.config import get_config
from efficientdet_tf.data.records import read_boxes
from efficientdet_tf.ops import anchor_coverage
from efficientdet_tf.ops.anchors import generate_anchors
from helpers import SMALL, box_iou
from tfrecord_tools.example_writer import make_example, write_records


def elongated_boxes(count, seed=0, size=512):
    """Thin boxes (6-10 px by 40-80 px, lying or standing) anywhere in a `size` picture."""
    rng = np.random.default_rng(seed)
    short, long = rng.uniform(6, 10, count), rng.uniform(40, 80, count)
    lying = rng.random(count) < 0.5
    h, w = np.where(lying, short, long), np.where(lying, long, short)
    y, x = rng.uniform(0, size - h), rng.uniform(0, size - w)
    return np.stack([y, x, y + h, x + w], -1)


@pytest.fixture(scope="module")
def thin_records(tmp_path_factory):
    rng = np.random.default_rng(1)
    examples = []
    for index in range(12):
        boxes = elongated_boxes(8, seed=index)
        picture = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
        examples.append(make_example(picture, boxes, np.ones(len(boxes), np.int64), source_id=str(index),
                                     image_format="png"))
    return write_records(str(tmp_path_factory.mktemp("thin") / "train-00000-of-00001.tfrecord"), examples)


def test_best_iou_is_the_best_over_the_whole_grid():
    config = get_config("efficientdet-d0", "image_size=256")
    rng = np.random.default_rng(0)
    sizes = rng.uniform(4, 200, (300, 2))
    corners = rng.uniform(0, 256 - sizes)
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    grid = generate_anchors(256, 3, 7, 3, (1.0, 2.0, 0.5), 4.0)
    want = box_iou(boxes, grid).max(axis=1)
    got = anchor_coverage.best_iou(boxes, 256, 3, 7, 3, (1.0, 2.0, 0.5), 4.0)
    np.testing.assert_allclose(got, want, atol=1e-6)  # the grid is float32
    assert anchor_coverage.coverage(boxes, config).share == pytest.approx(np.mean(want >= 0.5))


def test_search_covers_boxes_the_default_anchors_miss():
    config = get_config("efficientdet-d0")
    boxes = elongated_boxes(400)
    now = anchor_coverage.coverage(boxes, config)
    best = anchor_coverage.suggest(boxes, config)
    assert now.share < 0.2
    assert best.share > now.share + 0.5
    # The override it prints gives that coverage when applied.
    applied = anchor_coverage.coverage(boxes, get_config("efficientdet-d0", best.override()))
    assert applied.share == pytest.approx(best.share)
    assert len(applied.settings["anchors.aspect_ratios"]) == 3  # the heads keep their shape


def test_read_boxes_scales_to_the_input_and_reports_coverage(thin_records):
    from tfrecord_tools.inspect_tfrecord import anchor_report

    pictures, skipped = read_boxes([thin_records])
    assert skipped == 0 and len(pictures) == 12 and all((h, w) == (512, 512) for h, w, _ in pictures)
    boxes = anchor_coverage.input_boxes(pictures, 256)  # half the picture's size
    np.testing.assert_allclose(boxes[:8], elongated_boxes(8, seed=0) / 2, atol=0.01)
    report = anchor_report([thin_records], "efficientdet-d0")
    suggestion = next(line for line in report.splitlines() if line.startswith("suggested: --hparams='"))
    assert "anchors.aspect_ratios=" in suggestion  # only what changes is printed
    assert "0.5]" not in suggestion


def test_training_warns_before_the_first_step_with_the_better_grid(thin_records, tmp_path, capsys):
    from efficientdet_tf.train import trainer

    config = get_config("efficientdet-d0", dict(SMALL, num_classes=1))
    options = trainer.RunOptions(train_file_pattern=thin_records, train_steps=1, progress=False)
    run = trainer.TrainingRun(config, str(tmp_path / "model"), options)
    run.set_up()
    out = capsys.readouterr().out
    assert "warning: only" in out and "get a positive anchor" in out and "--hparams='anchors." in out
    suggested = out.split("--hparams='")[1].split("'")[0]
    boxes = anchor_coverage.input_boxes(read_boxes([thin_records])[0], 128)  # 2-20 px: hard to cover
    now = anchor_coverage.coverage(boxes, config)
    covered = anchor_coverage.coverage(boxes, config.replace(suggested))
    assert "only %.0f%% of the boxes" % (100 * now.share) in out
    assert covered.share > now.share + 0.3
