"""Tests of tfrecord_tools: converters, shared cleaning, inspection and the shapes dataset."""

import collections
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO

from efficientdet_tf.data import label_map as label_maps
from tfrecord_tools import convert, example_writer, inspect_tfrecord, make_shapes_dataset
from tfrecord_tools.create_coco_tfrecord import create_coco_tfrecord
from tfrecord_tools.create_voc_tfrecord import create_voc_tfrecord
from tfrecord_tools.create_yolo_tfrecord import create_yolo_tfrecord
from tfrecord_tools.report import ConversionReport

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_records(paths):
    """{source_id: fields} of every record, parsed with tf.train.Example."""
    records = {}
    for path in paths:
        for raw in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature
            floats = lambda k: np.array(feature[k].float_list.value, np.float64)
            source_id = feature["image/source_id"].bytes_list.value[0].decode()
            records[source_id] = {
                "path": path,
                "width": feature["image/width"].int64_list.value[0],
                "height": feature["image/height"].int64_list.value[0],
                "filename": feature["image/filename"].bytes_list.value[0].decode(),
                "format": feature["image/format"].bytes_list.value[0],
                "encoded": feature["image/encoded"].bytes_list.value[0],
                "boxes": np.stack([floats("image/object/bbox/" + k) for k in ("ymin", "xmin", "ymax", "xmax")], -1),
                "labels": list(feature["image/object/class/label"].int64_list.value),
                "texts": [t.decode() for t in feature["image/object/class/text"].bytes_list.value],
                "area": floats("image/object/area"),
                "is_crowd": list(feature["image/object/is_crowd"].int64_list.value),
            }
    return records


def coco_to_normalised(bbox, width, height):
    x, y, w, h = bbox
    return [y / height, x / width, (y + h) / height, (x + w) / width]


def write_picture(path, width, height, seed, mode="RGB", fmt="JPEG"):
    """Writes a noise picture; returns its RGB pixels as written (before any JPEG loss)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return pixels


def small_coco(tmp_path, annotations, sizes=((64, 48),), categories=((1, "cat"), (3, "dog"))):
    """A COCO dataset of noise pictures 0.jpg, 1.jpg ... with the given annotations."""
    image_dir = tmp_path / "images"
    images = []
    for i, (w, h) in enumerate(sizes):
        write_picture(str(image_dir / ("%d.jpg" % i)), w, h, seed=i)
        images.append({"id": i + 1, "file_name": "%d.jpg" % i, "width": w, "height": h})
    anns = [dict(a, id=k + 1) for k, a in enumerate(annotations)]
    dataset = {"images": images, "annotations": anns,
               "categories": [{"id": i, "name": n} for i, n in categories]}
    json_path = tmp_path / "instances.json"
    json_path.write_text(json.dumps(dataset))
    return str(image_dir), str(json_path), dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shapes"))
    jsons = make_shapes_dataset.make_shapes_dataset(out, num_train=10, num_val=3, seed=7,
                                                    size_range=(80, 112), max_objects=5)
    return out, jsons


# ---------------------------------------------------------------- shapes dataset and round trip

def test_shapes_round_trip_keeps_every_box(shapes, tmp_path):
    out, jsons = shapes
    with open(jsons["train"]) as f:
        dataset = json.load(f)
    paths, report = create_coco_tfrecord(os.path.join(out, "train"), jsons["train"],
                                         str(tmp_path / "train"), num_shards=3, num_workers=2)
    assert not report.has_issues(), report.summary()
    assert paths == [str(tmp_path / ("train-%05d-of-00003.tfrecord" % i)) for i in range(3)]
    records = read_records(paths)
    assert len(records) == len(dataset["images"]) == 10
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    for index, image in enumerate(dataset["images"]):
        record = records[str(image["id"])]
        assert record["path"] == paths[index % 3]  # deterministic round-robin sharding
        assert (record["width"], record["height"]) == (image["width"], image["height"])
        anns = [a for a in dataset["annotations"] if a["image_id"] == image["id"]]
        assert len(anns) >= 1
        expected = [coco_to_normalised(a["bbox"], image["width"], image["height"]) for a in anns]
        np.testing.assert_allclose(record["boxes"], expected, atol=1e-6)
        assert record["labels"] == [a["category_id"] for a in anns]
        assert record["texts"] == [names[a["category_id"]] for a in anns]
        np.testing.assert_allclose(record["area"], [a["area"] for a in anns])
        assert record["is_crowd"] == [0] * len(anns)
        decoded = tf.io.decode_jpeg(record["encoded"]).numpy()
        assert decoded.shape == (image["height"], image["width"], 3)
    with open(str(tmp_path / "train_label_map.yaml")) as f:
        assert label_maps.load_label_map(f.name) == {1: "circle", 2: "square", 3: "triangle", 4: "star", 5: "ring"}


def test_shapes_are_deterministic_with_tight_boxes(shapes):
    out, jsons = shapes
    pixels, drawn = make_shapes_dataset.make_image(7, "train", 0, (80, 112), 5)
    again, _ = make_shapes_dataset.make_image(7, "train", 0, (80, 112), 5)
    other, _ = make_shapes_dataset.make_image(8, "train", 0, (80, 112), 5)
    np.testing.assert_array_equal(pixels, again)
    assert pixels.shape != other.shape or not np.array_equal(pixels, other)
    with open(jsons["train"]) as f:
        dataset = json.load(f)
    anns = [a for a in dataset["annotations"] if a["image_id"] == 1]
    assert [a["category_id"] for a in anns] == [c for c, _ in drawn]
    for ann, (_, mask) in zip(anns, drawn):
        x, y, w, h = ann["bbox"]
        assert ann["area"] == mask.sum() > 0
        # Tight: the mask touches all four sides of its box and nothing lies outside it.
        inside = mask[y:y + h, x:x + w]
        assert inside.sum() == mask.sum()
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        # The mask is what was drawn: a shape is one colour plus mild shading.
        assert pixels[mask].astype(float).std(axis=0).max() < 12
    assert make_shapes_dataset.mask_to_box(np.pad(np.ones((3, 2), bool), ((4, 1), (5, 0)))) == [5, 4, 2, 3]


def test_output_does_not_depend_on_worker_count(shapes, tmp_path):
    out, jsons = shapes
    one, _ = create_coco_tfrecord(os.path.join(out, "val"), jsons["val"], str(tmp_path / "a"), 2, 1)
    many, _ = create_coco_tfrecord(os.path.join(out, "val"), jsons["val"], str(tmp_path / "b"), 2, 3)
    for a, b in zip(one, many):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()


# ---------------------------------------------------------------- VOC and YOLO == COCO

def _write_voc_and_yolo(tmp_path, dataset, image_dir, difficult_extra=False):
    voc = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    order = sorted(names)  # YOLO class k is the k-th id
    (yolo / "classes.txt").write_text("\n".join(names[i] for i in order) + "\n")
    stems = []
    for image in dataset["images"]:
        stem = os.path.splitext(image["file_name"])[0]
        stems.append(stem)
        data = open(os.path.join(image_dir, image["file_name"]), "rb").read()
        (voc / "JPEGImages" / image["file_name"]).write_bytes(data)
        (yolo / image["file_name"]).write_bytes(data)
        objects, lines = [], []
        w, h = image["width"], image["height"]
        for a in (a for a in dataset["annotations"] if a["image_id"] == image["id"]):
            x, y, bw, bh = a["bbox"]
            objects.append("<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin>"
                           "<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>"
                           % (names[a["category_id"]], x + 1, y + 1, x + bw, y + bh))
            lines.append("%d %.10f %.10f %.10f %.10f" % (order.index(a["category_id"]), (x + bw / 2) / w,
                                                        (y + bh / 2) / h, bw / w, bh / h))
        if difficult_extra and image["id"] == 1:
            objects.append("<object><name>cat</name><difficult>1</difficult><bndbox><xmin>2</xmin>"
                           "<ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>")
        (voc / "Annotations" / (stem + ".xml")).write_text(
            "<annotation><filename>%s</filename><size><width>%d</width><height>%d</height>"
            "<depth>3</depth></size>%s</annotation>" % (image["file_name"], w, h, "".join(objects)))
        if lines:  # a picture without boxes has no label file, as YOLO tools write it
            (yolo / (stem + ".txt")).write_text("\n".join(lines) + "\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("\n".join(stems) + "\n")
    return str(voc), str(yolo)


def test_voc_and_yolo_give_the_same_records_as_coco(tmp_path):
    anns = [{"image_id": 1, "category_id": 1, "bbox": [3, 4, 20, 10]},
            {"image_id": 1, "category_id": 2, "bbox": [30, 0, 34, 48]},
            {"image_id": 2, "category_id": 3, "bbox": [0, 5, 7, 9]},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, 40, 30]}]
    image_dir, json_path, dataset = small_coco(
        tmp_path, anns, sizes=((64, 48), (80, 60), (50, 40)),
        categories=((1, "bird"), (2, "cat"), (3, "dog")))  # sorted names == ids, as VOC derives them
    voc_dir, yolo_dir = _write_voc_and_yolo(tmp_path, dataset, image_dir, difficult_extra=True)
    coco_paths, _ = create_coco_tfrecord(image_dir, json_path, str(tmp_path / "coco"), 2)
    voc_paths, voc_report = create_voc_tfrecord(voc_dir, "val", str(tmp_path / "voc_rec"),
                                                ignore_difficult=True, num_shards=2)
    yolo_paths, yolo_report = create_yolo_tfrecord(yolo_dir, os.path.join(yolo_dir, "classes.txt"),
                                                   str(tmp_path / "yolo_rec"), num_shards=2)
    assert voc_report.counts["difficult_skipped"] == 1 and not voc_report.has_issues()
    assert not yolo_report.has_issues(), yolo_report.summary()
    coco, voc, yolo = read_records(coco_paths), read_records(voc_paths), read_records(yolo_paths)
    assert sorted(coco) == sorted(voc) == sorted(yolo) == ["1", "2", "3"]
    assert coco["3"]["labels"] == []  # the picture without boxes is kept
    for sid, want in coco.items():
        for got in (voc[sid], yolo[sid]):
            np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-6)
            assert got["labels"] == want["labels"] and got["texts"] == want["texts"]
            assert got["encoded"] == want["encoded"]
            np.testing.assert_allclose(got["area"], want["area"], rtol=1e-5)
    # The ground truth written beside the records loads in pycocotools and matches the COCO boxes.
    gt = COCO(str(tmp_path / "voc_rec_gt.json"))
    np.testing.assert_allclose(sorted(a["bbox"] for a in gt.dataset["annotations"]),
                               sorted(a["bbox"] for a in anns), atol=1e-6)


def test_voc_unknown_name_and_yolo_bad_lines_are_counted(tmp_path):
    anns = [{"image_id": 1, "category_id": 1, "bbox": [3, 4, 20, 10]},
            {"image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10]}]
    image_dir, _, dataset = small_coco(tmp_path, anns)
    voc_dir, yolo_dir = _write_voc_and_yolo(tmp_path, dataset, image_dir)
    label_map = tmp_path / "map.yaml"
    label_map.write_text("1: cat\n")
    _, report = create_voc_tfrecord(voc_dir, "val", str(tmp_path / "v"), str(label_map))
    assert report.counts["unknown_category_skipped"] == 1
    assert "'dog'" in report.summary()
    with open(os.path.join(yolo_dir, "0.txt"), "a") as f:
        f.write("0 0.5 0.5\n7 0.5 0.5 0.1 0.1\n")
    paths, report = create_yolo_tfrecord(yolo_dir, os.path.join(yolo_dir, "classes.txt"),
                                         str(tmp_path / "y"))
    assert report.counts["label_line_malformed_skipped"] == 1
    assert report.counts["unknown_category_skipped"] == 1  # class 7 -> id 8, not a class
    assert read_records(paths)["1"]["labels"] == [1, 2]


# ---------------------------------------------------------------- cleaning of bad input

def test_box_outside_the_picture_is_clipped_and_counted(tmp_path):
    anns = [{"image_id": 1, "category_id": 1, "bbox": [-5, 10, 20, 20], "area": 400},
            {"image_id": 1, "category_id": 3, "bbox": [50, 40, 30, 30]},
            {"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "area": 7}]
    image_dir, json_path, _ = small_coco(tmp_path, anns)
    paths, report = create_coco_tfrecord(image_dir, json_path, str(tmp_path / "r"))
    assert report.counts["box_clipped"] == 2 and report.has_issues()
    record = read_records(paths)["1"]
    np.testing.assert_allclose(record["boxes"], [[10 / 48, 0, 30 / 48, 15 / 64],
                                                 [40 / 48, 50 / 64, 1, 1],
                                                 [2 / 48, 1 / 64, 6 / 48, 4 / 64]], atol=1e-6)
    # COCO's area is the object's: clipping the box keeps it (as the official converter); only a
    # missing area comes from the kept box.
    np.testing.assert_allclose(record["area"], [400, 14 * 8, 7])


def test_empty_and_outside_boxes_are_skipped_and_counted(tmp_path):
    anns = [{"image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, -3]},
            {"image_id": 1, "category_id": 1, "bbox": [70, 5, 10, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [5, 5, float("nan"), 10]},
            {"image_id": 1, "category_id": 3, "bbox": [5, 6, 7, 8]},
            {"image_id": 42, "category_id": 3, "bbox": [5, 6, 7, 8]}]
    image_dir, json_path, _ = small_coco(tmp_path, anns)
    paths, report = create_coco_tfrecord(image_dir, json_path, str(tmp_path / "r"))
    assert report.counts["box_empty_skipped"] == 2
    assert report.counts["box_outside_skipped"] == 1
    assert report.counts["box_invalid_skipped"] == 1
    assert report.counts["unknown_image_skipped"] == 1
    assert read_records(paths)["1"]["labels"] == [3]


def test_real_picture_size_wins_over_the_annotated_one(tmp_path):
    image_dir, json_path, dataset = small_coco(tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [8, 6, 16, 12]}])
    dataset["images"][0].update(width=100, height=100)
    with open(json_path, "w") as f:
        json.dump(dataset, f)
    paths, report = create_coco_tfrecord(image_dir, json_path, str(tmp_path / "r"))
    assert report.counts["image_size_mismatch"] == 1 and "real 64x48" in report.summary()
    record = read_records(paths)["1"]
    assert (record["width"], record["height"]) == (64, 48)
    np.testing.assert_allclose(record["boxes"], [[6 / 48, 8 / 64, 18 / 48, 24 / 64]], atol=1e-6)


def test_unknown_category_is_skipped_and_counted(tmp_path):
    anns = [{"image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}]
    image_dir, json_path, _ = small_coco(tmp_path, anns)
    paths, report = create_coco_tfrecord(image_dir, json_path, str(tmp_path / "r"))
    assert report.counts["unknown_category_skipped"] == 1
    assert "category 99" in report.summary()
    assert read_records(paths)["1"]["labels"] == [3]  # COCO ids are kept as they are


def test_missing_and_unreadable_pictures_are_reported_and_skipped(tmp_path):
    anns = [{"image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in (1, 2, 3, 4)]
    image_dir, json_path, _ = small_coco(tmp_path, anns, sizes=((64, 48),) * 4)
    os.remove(os.path.join(image_dir, "1.jpg"))
    with open(os.path.join(image_dir, "2.jpg"), "wb") as f:
        f.write(b"this is not a picture")
    data = open(os.path.join(image_dir, "3.jpg"), "rb").read()
    with open(os.path.join(image_dir, "3.jpg"), "wb") as f:
        f.write(data[:len(data) // 2])  # truncated JPEG
    paths, report = create_coco_tfrecord(image_dir, json_path, str(tmp_path / "r"))
    assert report.counts["image_missing_skipped"] == 1
    assert report.counts["image_unreadable_skipped"] == 2
    assert report.counts["boxes_of_skipped_images"] == 3
    summary = report.summary()
    assert "1.jpg" in summary and "2.jpg" in summary and "3.jpg" in summary
    assert sorted(read_records(paths)) == ["1"]  # the one good picture (0.jpg, id 1)


def test_grayscale_cmyk_png_rgba_become_rgb_jpeg(tmp_path):
    image_dir = tmp_path / "images"
    cases = [("gray.jpg", "L", "JPEG"), ("cmyk.jpg", "CMYK", "JPEG"), ("rgb.png", "RGB", "PNG"),
             ("rgba.png", "RGBA", "PNG"), ("rgb.jpg", "RGB", "JPEG")]
    images = []
    for i, (name, mode, fmt) in enumerate(cases):
        write_picture(str(image_dir / name), 40, 30, seed=i, mode=mode, fmt=fmt)
        images.append({"id": i + 1, "file_name": name, "width": 40, "height": 30})
    transparent = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # red but fully transparent
    transparent.save(str(image_dir / "rgba.png"))
    dataset = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps(dataset))
    paths, report = create_coco_tfrecord(str(image_dir), str(json_path), str(tmp_path / "r"))
    assert report.counts["image_converted"] == 4
    records = read_records(paths)
    for i, (name, _, _) in enumerate(cases):
        record = records[str(i + 1)]
        assert record["format"] == b"jpeg" and record["encoded"][:2] == b"\xff\xd8"
        with Image.open(io.BytesIO(record["encoded"])) as decoded:
            assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", (40, 30))
    assert tf.io.decode_jpeg(records["4"]["encoded"]).numpy().min() > 245  # transparent -> white
    assert records["5"]["encoded"] == (image_dir / "rgb.jpg").read_bytes()  # RGB JPEG kept as is


def test_empty_annotation_list_is_kept_as_negative(tmp_path):
    image_dir, json_path, _ = small_coco(tmp_path, [], sizes=((64, 48), (32, 32)))
    paths, report = create_coco_tfrecord(image_dir, json_path, str(tmp_path / "r"))
    assert report.counts["negative_image"] == 2 and not report.has_issues()
    records = read_records(paths)
    assert sorted(records) == ["1", "2"]
    assert records["2"]["boxes"].shape == (0, 4) and records["2"]["labels"] == []


def test_strict_exits_non_zero_when_something_changed(tmp_path):
    image_dir, json_path, _ = small_coco(tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [-3, 0, 10, 10]}])
    cmd = [sys.executable, "-m", "tfrecord_tools.create_coco_tfrecord", "--image_dir", image_dir,
           "--object_annotations_file", json_path, "--output_file_prefix", str(tmp_path / "r"),
           "--num_workers", "1", "--strict"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1        boxes clipped to the picture" in result.stdout
    clean = ConversionReport()
    clean.add("negative_image", "x.jpg")  # a note, not a change
    assert convert.finish([], clean, strict=True) == 0


# ---------------------------------------------------------------- inspect_tfrecord

def test_inspect_reports_bad_records_and_renders(shapes, tmp_path):
    out, jsons = shapes
    paths, _ = create_coco_tfrecord(os.path.join(out, "val"), jsons["val"], str(tmp_path / "val"), 1)
    good = read_records(paths)["1"]
    bad = str(tmp_path / "bad-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(bad) as writer:
        writer.write(example_writer.build_example(good["encoded"], good["width"], good["height"], 1, "ok.jpg",
                                                  [[1, 1, 5, 5]], [2], ["square"], [25.0], [0]).SerializeToString())
        writer.write(example_writer.build_example(b"garbage bytes", 10, 10, 2, "g.jpg",
                                                  [], [], [], [], []).SerializeToString())
        writer.write(example_writer.build_example(good["encoded"], good["width"], good["height"], 3, "b.jpg",
                                                  [[5, 5, -2, 4]], [9], ["?"], [1.0], [0]).SerializeToString())
        writer.write(example_writer.build_example(good["encoded"], good["width"], good["height"], 4, "c.jpg",
                                                  [[1, 1, 5, 5]], [1], ["circle"], [1.0, 2.0], [0]).SerializeToString())
    with open(jsons["val"]) as f:
        dataset = json.load(f)
    label_map = {c["id"]: c["name"] for c in dataset["categories"]}
    render_dir = str(tmp_path / "render")
    result = inspect_tfrecord.inspect_records(paths + [bad], label_map, render=4, output_dir=render_dir)
    assert result.num_records == 3 + 4
    assert [(f, i) for f, i, _ in result.invalid] == [(bad, 1), (bad, 2), (bad, 3)]
    assert "undecodable image" in result.invalid[0][2]
    assert "has no area" in result.invalid[1][2] and "label 9 out of range" in result.invalid[1][2]
    assert "lists of different lengths [1, 2]" in result.invalid[2][2]
    expected = collections.Counter(a["category_id"] for a in dataset["annotations"])
    expected.update([2, 9])  # the boxes of the two extra records whose pictures decode
    assert result.boxes_per_class == expected
    text = inspect_tfrecord.format_inspection(result, label_map)
    assert "%s [1]: undecodable image" % bad in text
    # The first four records whose pictures decode; the garbage one is not among them.
    assert sorted(os.listdir(render_dir)) == ["bad-00000-of-00001_00000.jpg"] + [
        "val-00000-of-00001_%05d.jpg" % i for i in range(3)]
    drawn = np.asarray(Image.open(os.path.join(render_dir, "val-00000-of-00001_00000.jpg")), np.float32)
    plain = tf.io.decode_jpeg(good["encoded"]).numpy().astype(np.float32)
    assert np.abs(drawn - plain).mean() > 1.0  # boxes and names were drawn


def test_inspect_cli_reports_truncated_file(shapes, tmp_path):
    out, jsons = shapes
    paths, _ = create_coco_tfrecord(os.path.join(out, "val"), jsons["val"], str(tmp_path / "val"), 1)
    data = open(paths[0], "rb").read()
    with open(paths[0], "wb") as f:
        f.write(data[:-100])  # cut into the last record: its CRC check fails
    cmd = [sys.executable, "-m", "tfrecord_tools.inspect_tfrecord", "--input_pattern", paths[0]]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "label map: %s" % label_maps.label_map_path(str(tmp_path / "val")) in result.stdout
    assert "records: 2" in result.stdout
    assert "%s [2]: corrupt TFRecord data" % paths[0] in result.stdout


# ---------------------------------------------------------------- picture modes, EXIF, ids

def _coco_of(tmp_path, files, annotations=(), categories=((1, "a"),), sizes=None):
    images = []
    for i, name in enumerate(files):
        entry = {"id": i + 1, "file_name": name}
        if sizes:
            entry.update(width=sizes[i][0], height=sizes[i][1])
        images.append(entry)
    dataset = {"images": images, "annotations": [dict(a, id=k + 1) for k, a in enumerate(annotations)],
               "categories": [{"id": i, "name": n} for i, n in categories]}
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps(dataset))
    return str(json_path)


def test_16_bit_grayscale_is_scaled_as_tensorflow_does(tmp_path):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    ramp = (np.arange(40 * 30, dtype=np.int64) * 65535 // (40 * 30 - 1)).astype(np.uint16).reshape(30, 40)
    Image.fromarray(ramp).save(str(image_dir / "deep.png"))
    paths, report = create_coco_tfrecord(str(image_dir), _coco_of(tmp_path, ["deep.png"]), str(tmp_path / "r"))
    assert report.counts["image_converted"] == 1
    got = tf.io.decode_jpeg(read_records(paths)["1"]["encoded"]).numpy()[..., 0].astype(int)
    want = tf.io.decode_png((image_dir / "deep.png").read_bytes(), dtype=tf.uint8).numpy()[..., 0].astype(int)
    assert want.max() == 255 and want.mean() > 100  # a ramp, not a white page
    assert np.abs(got - want).max() <= 8  # JPEG loss only (clipping gave 255 almost everywhere)


def _rotated_jpeg(path, orientation=6):
    """A smooth 40x30 picture (JPEG keeps it close) stored with an EXIF orientation."""
    rows, cols = np.mgrid[0:30, 0:40]
    pixels = np.stack([rows * 8, cols * 6, 255 - rows * 4], -1).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=98, exif=exif)


def test_exif_rotated_jpeg_is_rotated_to_what_viewers_show(tmp_path):
    from PIL import ImageOps

    image_dir = tmp_path / "images"
    _rotated_jpeg(str(image_dir / "r.jpg"))  # stored 40x30, shown 30x40
    anns = [{"image_id": 1, "category_id": 1, "bbox": [2, 20, 10, 15]}]  # drawn on the shown picture
    paths, report = create_coco_tfrecord(str(image_dir), _coco_of(tmp_path, ["r.jpg"], anns, sizes=[(30, 40)]),
                                         str(tmp_path / "r"))
    assert report.counts["image_exif_rotated"] == 1 and not report.counts["image_size_mismatch"]
    record = read_records(paths)["1"]
    assert (record["width"], record["height"]) == (30, 40)
    with Image.open(str(image_dir / "r.jpg")) as original:
        shown = np.asarray(ImageOps.exif_transpose(original)).astype(int)
    assert np.abs(tf.io.decode_jpeg(record["encoded"]).numpy().astype(int) - shown).mean() < 4
    np.testing.assert_allclose(record["boxes"], [[20 / 40, 2 / 30, 35 / 40, 12 / 30]], atol=1e-6)


def test_exif_rotation_annotated_on_the_stored_picture_is_kept_and_noted(tmp_path):
    image_dir = tmp_path / "images"
    _rotated_jpeg(str(image_dir / "r.jpg"))
    paths, report = create_coco_tfrecord(str(image_dir), _coco_of(tmp_path, ["r.jpg"], sizes=[(40, 30)]),
                                         str(tmp_path / "r"))
    assert report.counts["image_exif_ignored"] == 1 and not report.counts["image_exif_rotated"]
    assert "orientation 6" in report.summary()
    record = read_records(paths)["1"]
    assert (record["width"], record["height"]) == (40, 30)
    assert record["encoded"] == (image_dir / "r.jpg").read_bytes()


def test_transparent_pixels_are_white_in_records_and_in_serving(tmp_path):
    from efficientdet_tf.data.pictures import load_rgb
    from efficientdet_tf.ops.image_decoding import decode_image

    image_dir = tmp_path / "images"
    image_dir.mkdir()
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255  # left half transparent (stored black-red), right half opaque
    rgba[10:20, :, 3] = 100
    Image.fromarray(rgba, "RGBA").save(str(image_dir / "t.png"))
    paths, _ = create_coco_tfrecord(str(image_dir), _coco_of(tmp_path, ["t.png"]), str(tmp_path / "r"))
    trained = tf.io.decode_jpeg(read_records(paths)["1"]["encoded"]).numpy().astype(int)
    served = decode_image((image_dir / "t.png").read_bytes()).numpy().astype(int)
    inferred = load_rgb(str(image_dir / "t.png")).astype(int)
    assert served[0, 0].tolist() == [255, 255, 255] and served[0, 30].tolist() == [200, 0, 0]
    np.testing.assert_array_equal(inferred, served)
    assert np.abs(trained - served).mean() < 8  # JPEG loss at the sharp edges only (white vs black: ~100)
    assert trained[2, 2].min() > 245


def test_category_id_zero_is_shifted_and_reported(tmp_path):
    image_dir = tmp_path / "images"
    write_picture(str(image_dir / "0.jpg"), 64, 48, seed=0)
    anns = [{"image_id": 1, "category_id": 0, "bbox": [1, 2, 10, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [20, 2, 10, 10]}]
    json_path = _coco_of(tmp_path, ["0.jpg"], anns, categories=((0, "person"), (1, "car")))
    gt = str(tmp_path / "gt.json")
    paths, report = create_coco_tfrecord(str(image_dir), json_path, str(tmp_path / "r"), gt_json_file=gt)
    assert report.counts["category_id_zero"] == 1 and report.has_issues()
    assert "person: 0 -> 1" in report.summary()
    record = read_records(paths)["1"]
    assert record["labels"] == [1, 2] and record["texts"] == ["person", "car"]
    assert label_maps.load_label_map(label_maps.label_map_path(str(tmp_path / "r"))) == {1: "person", 2: "car"}
    cleaned = json.load(open(gt))
    assert sorted(c["id"] for c in cleaned["categories"]) == [1, 2]
    assert sorted(a["category_id"] for a in cleaned["annotations"]) == [1, 2]
