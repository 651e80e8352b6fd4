"""Generates the project's built-in dataset: coloured shapes on textured backgrounds, COCO format."""

import json
import math
import os

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from tfrecord_tools import create_coco_tfrecord

FLAGS = flags.FLAGS

CLASS_NAMES = ("circle", "square", "triangle", "star", "ring")  # ids 1..5
CATEGORIES = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)]
_MIN_VISIBLE_FRACTION = 0.5  # an occluded shape keeps at least half of its pixels
_MIN_COLOUR_DISTANCE = 90.0  # shapes must stand out from the background under them
_SPLIT_CODES = {"train": 1, "val": 2}


def define_flags():
    """Defines this tool's flags (only when run as a program, so tests can import the module)."""
    flags.DEFINE_string("output_dir", None, "Where to write <split>/*.jpg and <split>.json.")
    flags.DEFINE_integer("num_train", 400, "Number of training pictures.", lower_bound=0)
    flags.DEFINE_integer("num_val", 100, "Number of validation pictures.", lower_bound=0)
    flags.DEFINE_integer("seed", 0, "Random seed: the same seed gives the same files.")
    flags.DEFINE_list("image_size", ["256", "320"], "One size, or 'min,max': each picture's width "
                      "and height are drawn from [min, max].")
    flags.DEFINE_integer("max_objects", 6, "Most shapes per picture.", lower_bound=1)
    flags.DEFINE_bool("write_tfrecords", True, "Also convert each split to <split>-*.tfrecord.")
    flags.DEFINE_integer("num_shards", 1, "TFRecord shards per split.", lower_bound=1)
    flags.mark_flag_as_required("output_dir")


def _background(rng, width, height):
    """A random texture (gradient, stripes, checkers or blotches) plus pixel noise, float HxWx3."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:
        angle = rng.uniform(0, 2 * math.pi)
        t = x * math.cos(angle) + y * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    elif kind == 1:
        angle, period = rng.uniform(0, math.pi), rng.uniform(8, 40)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period)
    elif kind == 2:
        cell = int(rng.integers(12, 48))
        t = ((x // cell + y // cell) % 2).astype(np.float32)
    else:
        coarse = rng.uniform(0, 255, size=(int(rng.integers(3, 8)),) * 2).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR),
                       np.float32) / 255.0
    image = c0 + (c1 - c0) * t[..., None]
    return image + rng.normal(0, rng.uniform(3, 12), size=image.shape).astype(np.float32)


def _polygon(cx, cy, radii, angle):
    """Vertices at equal angular steps around (cx, cy), radius cycling through `radii`."""
    n = len(radii)
    return [(cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
            for k, r in enumerate(radii)]


def _shape_mask(rng, class_id, width, height):
    """Draws one shape of `class_id` at a random place and size; returns its bool mask."""
    radius = rng.uniform(8, 0.22 * min(width, height))
    cx = rng.uniform(radius + 1, width - radius - 1)
    cy = rng.uniform(radius + 1, height - radius - 1)
    angle = rng.uniform(0, 2 * math.pi)
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    name = CLASS_NAMES[class_id - 1]
    if name == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, [radius] * 4, angle), fill=255)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, [radius] * 3, angle), fill=255)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, [radius, radius * rng.uniform(0.38, 0.5)] * 5, angle), fill=255)
    else:  # ring: a disc with a concentric hole
        inner = radius * rng.uniform(0.45, 0.7)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    return np.asarray(mask) > 0


def make_image(seed, split, index, size_range=(256, 320), max_objects=6):
    """Generates one picture.

    Returns (uint8 HxWx3 array, list of (class_id, visible bool mask)); the masks are exactly the
    pixels each shape shows after later shapes were drawn over it, so boxes from them are tight.
    """
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    width, height = (int(rng.integers(size_range[0], size_range[1] + 1)) for _ in range(2))
    image = _background(rng, width, height)
    shapes = []  # [class_id, full pixel count, visible mask]
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(5):
            class_id = int(rng.integers(1, len(CLASS_NAMES) + 1))
            mask = _shape_mask(rng, class_id, width, height)
            # Reject a shape that would hide too much of one drawn earlier.
            if all((vis & ~mask).sum() >= _MIN_VISIBLE_FRACTION * full for _, full, vis in shapes):
                break
        else:
            continue
        under = image[mask].mean(axis=0)
        for _attempt in range(10):
            colour = rng.uniform(0, 255, size=3)
            if np.linalg.norm(colour - under) >= _MIN_COLOUR_DISTANCE:
                break
        else:
            colour = 255.0 - under  # the opposite colour always contrasts
        shade = rng.normal(0, 6, size=(int(mask.sum()), 3))
        image[mask] = colour + shade
        for entry in shapes:
            entry[2] = entry[2] & ~mask
        shapes.append([class_id, int(mask.sum()), mask])
    return np.clip(image, 0, 255).astype(np.uint8), [(c, vis) for c, _, vis in shapes]


def mask_to_box(mask):
    """Tight COCO box [x, y, w, h] (pixel edges) around the True pixels of a bool mask."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]


def make_split(output_dir, split, num_images, seed=0, size_range=(256, 320), max_objects=6):
    """Writes `num_images` JPEGs under output_dir/split and returns the COCO dict for them."""
    image_dir = os.path.join(output_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        pixels, shapes = make_image(seed, split, index, size_range, max_objects)
        file_name = "%06d.jpg" % index
        Image.fromarray(pixels).save(os.path.join(image_dir, file_name), quality=92)
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name,
                       "width": pixels.shape[1], "height": pixels.shape[0]})
        for class_id, mask in shapes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": class_id, "bbox": mask_to_box(mask),
                                "area": int(mask.sum()), "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def make_shapes_dataset(output_dir, num_train, num_val, seed=0, size_range=(256, 320), max_objects=6):
    """Writes train and val splits (pictures + <split>.json); returns {split: json path}."""
    paths = {}
    for split, count in (("train", num_train), ("val", num_val)):
        dataset = make_split(output_dir, split, count, seed, size_range, max_objects)
        paths[split] = os.path.join(output_dir, split + ".json")
        with open(paths[split], "w") as f:
            json.dump(dataset, f)
    return paths


def main(argv):
    """absl entry point."""
    del argv
    sizes = [int(v) for v in FLAGS.image_size]
    size_range = (min(sizes), max(sizes))
    jsons = make_shapes_dataset(FLAGS.output_dir, FLAGS.num_train, FLAGS.num_val, FLAGS.seed,
                                size_range, FLAGS.max_objects)
    for split, json_path in jsons.items():
        print("%s: %s" % (split, json_path))
        if FLAGS.write_tfrecords:
            paths, report = create_coco_tfrecord.create_coco_tfrecord(
                os.path.join(FLAGS.output_dir, split), json_path,
                os.path.join(FLAGS.output_dir, split), num_shards=FLAGS.num_shards, num_workers=2)
            print("  records: %s" % ", ".join(paths))
            if report.has_issues():  # generated data must convert cleanly; say so loudly if not
                print(report.summary())
                return 1
    return 0


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
