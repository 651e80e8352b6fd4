"""End-to-end input pipeline: round trip, augmentation, determinism, corrupt data handling."""

import numpy as np
import pytest
import tensorflow as tf

from efficientdet_tf.config import get_config
from tfrecord_tools.example_writer import make_example, write_records
from efficientdet_tf.data.pipeline import InputPipeline

SIZE = 128


def _config(extra=""):
    return get_config("efficientdet-d0", "image_size=%d,data.max_instances_per_image=8%s" % (SIZE, extra))


def _pictures(count, seed=0):
    """Pictures of random size with 0..3 red rectangles; returns (examples, truth list)."""
    rng = np.random.default_rng(seed)
    examples, truth = [], []
    for i in range(count):
        height, width = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        image = np.zeros((height, width, 3), np.uint8)
        boxes = []
        for _ in range(i % 4):
            y0, x0 = int(rng.integers(0, height - 20)), int(rng.integers(0, width - 20))
            y1, x1 = y0 + int(rng.integers(8, 20)), x0 + int(rng.integers(8, 20))
            image[y0:y1, x0:x1] = (255, 0, 0)
            boxes.append([y0, x0, y1, x1])
        classes = [int(c) for c in rng.integers(1, 91, len(boxes))]
        examples.append(make_example(image, np.array(boxes, np.float32).reshape(-1, 4), classes,
                                     source_id=str(1000 + i), image_format="png"))
        truth.append((1000 + i, (height, width), np.array(boxes, np.float32).reshape(-1, 4), classes))
    return examples, truth


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    examples, truth = _pictures(10)
    write_records(str(folder / "a.tfrecord"), examples[:6])
    write_records(str(folder / "b.tfrecord"), examples[6:])
    return str(folder / "*.tfrecord"), truth


def test_eval_round_trip_keeps_every_box(records):
    pattern, truth = records
    dataset = InputPipeline(pattern, _config(), is_training=False, batch_size=4)()
    seen = {}
    for images, labels in dataset:
        assert images.shape[1:] == (SIZE, SIZE, 3)
        for b in range(images.shape[0]):
            gt = labels["groundtruths"]
            n = int(gt["num_groundtruths"][b])
            seen[int(labels["image_id"][b])] = (
                gt["boxes"][b, :n].numpy(), gt["classes"][b, :n].numpy().tolist(),
                (int(gt["height"][b]), int(gt["width"][b])), float(labels["image_scale"][b]),
                gt["classes"][b, n:].numpy())
    assert sorted(seen) == [t[0] for t in truth]
    for image_id, size, boxes, classes in truth:
        got_boxes, got_classes, got_size, scale, padding = seen[image_id]
        np.testing.assert_allclose(got_boxes, boxes, atol=1e-3)
        assert got_classes == classes and got_size == size
        np.testing.assert_allclose(scale, max(size) / SIZE, rtol=1e-5)
        assert np.all(padding == 0)


def test_training_batches_and_objects_stay_in_boxes(records):
    pattern, _ = records
    config = _config(",data.autoaugment_policy=v0,data.deterministic=true,data.shuffle_buffer=8")
    dataset = InputPipeline(pattern, config, is_training=True, batch_size=4)()
    mean = np.array(config.mean_rgb, np.float32)
    std = np.array(config.stddev_rgb, np.float32)
    for images, labels in dataset.take(3):
        assert images.shape == (4, SIZE, SIZE, 3)
        assert labels["cls_targets_p3"].shape == (4, 16, 16, 9)
        assert labels["box_targets_p7"].shape == (4, 1, 1, 36)
        pixels = images.numpy() * std + mean
        for b in range(4):
            n = int(np.count_nonzero(labels["classes"][b]))
            red = (pixels[b, ..., 0] > 200) & (pixels[b, ..., 1] < 60) & (pixels[b, ..., 2] < 60)
            inside = np.zeros_like(red)
            for y0, x0, y1, x1 in labels["boxes"][b, :n].numpy():
                inside[max(int(y0) - 1, 0):int(np.ceil(y1)) + 1, max(int(x0) - 1, 0):int(np.ceil(x1)) + 1] = True
            assert not np.any(red & ~inside)
            assert float(labels["num_positives"][b]) >= n  # every kept box has an anchor


def test_deterministic_mode_repeats_exactly(records):
    pattern, _ = records
    config = _config(",data.autoaugment_policy=randaug,data.deterministic=true,data.seed=7")

    def first_batches():
        return [(i.numpy(), l["source_id"].numpy()) for i, l in
                InputPipeline(pattern, config, is_training=True, batch_size=2)().take(2)]

    a, b = first_batches(), first_batches()
    for (ia, sa), (ib, sb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)


def test_input_context_shards_files(records):
    pattern, truth = records
    ids = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        for _, labels in InputPipeline(pattern, _config(), is_training=False, batch_size=4)(context):
            assert labels["image_id"].shape[0] <= 2  # per-replica batch
            ids.extend(labels["image_id"].numpy().tolist())
    assert sorted(ids) == [t[0] for t in truth]


def _truncated_file(folder):
    examples, _ = _pictures(3, seed=1)
    path = write_records(str(folder / "cut.tfrecord"), examples)
    data = open(path, "rb").read()
    first_two = sum(len(e) + 16 for e in examples[:2])
    open(path, "wb").write(data[:first_two + 30])
    return path, first_two


def test_truncated_file_error_names_file_and_offset(tmp_path):
    path, offset = _truncated_file(tmp_path)
    dataset = InputPipeline(path, _config(), is_training=False, batch_size=1)()
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(dataset)
    message = str(error.value)
    assert "cut.tfrecord" in message and "byte offset %d" % offset in message and "record #2" in message


def test_truncated_file_skip_mode_counts(tmp_path):
    path, offset = _truncated_file(tmp_path)
    pipeline = InputPipeline(path, _config(",data.skip_corrupt=true"), is_training=False, batch_size=1)
    assert len(list(pipeline())) == 2
    assert len(pipeline.skipped) == 1
    file, index, skipped_offset, _ = pipeline.skipped[0]
    assert file == path and index == 2 and skipped_offset == offset


def test_undecodable_image(tmp_path):
    examples, _ = _pictures(3, seed=2)
    bad = make_example(np.zeros((10, 10, 3), np.uint8), [[1, 1, 5, 5]], [1], source_id="77",
                       encoded=b"\xff\xd8 this is not a jpeg")
    path = write_records(str(tmp_path / "bad.tfrecord"), [examples[0], bad, examples[1]])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"record #1 at byte offset \d+ of file .*bad.tfrecord"):
        list(InputPipeline(path, _config(), is_training=False, batch_size=1)())
    pipeline = InputPipeline(path, _config(",data.skip_corrupt=true"), is_training=False, batch_size=1)
    ids = [int(l["image_id"][0]) for _, l in pipeline()]
    assert ids == [1000, 1001]
    assert [(s[0], s[1]) for s in pipeline.skipped] == [(path, 1)]


def test_missing_files_name_the_pattern(tmp_path):
    with pytest.raises(ValueError, match="nothing-here"):
        InputPipeline(str(tmp_path / "nothing-here*"), _config(), is_training=False)()


def test_zero_based_labels_are_reported(tmp_path):
    examples, _ = _pictures(2, seed=3)
    zero_based = make_example(np.zeros((20, 20, 3), np.uint8), [[1, 1, 5, 5]], [0], source_id="5")
    path = write_records(str(tmp_path / "labels.tfrecord"), [examples[0], zero_based])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"1\.\.90 .*record #1 at byte offset"):
        list(InputPipeline(path, _config(), is_training=False, batch_size=1)())
    pipeline = InputPipeline(path, _config(",data.skip_corrupt=true"), is_training=False, batch_size=1)
    assert len(list(pipeline())) == 1 and len(pipeline.skipped) == 1
