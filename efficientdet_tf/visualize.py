"""Draws detections (boxes, class names, scores) on pictures with Pillow."""

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _color(class_id):
    # Golden-ratio hue steps keep neighbouring ids apart.
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image, detections, label_map=None, min_score=0.3):
    """Returns a PIL image of `image` with the detections of one picture drawn on it.

    Args:
      image: uint8 RGB [H, W, 3] (or a PIL image).
      detections: dict for one picture (no batch axis) with detection_boxes [M, 4]
        ([ymin, xmin, ymax, xmax] pixels), detection_scores [M], detection_classes [M], num_detections.
      label_map: optional {id: name}; ids are shown when a name is missing.
      min_score: detections below this score are not drawn.
    """
    picture = image.copy() if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    width = max(1, round(max(picture.size) / 300))
    count = int(detections["num_detections"])
    for box, score, class_id in zip(detections["detection_boxes"][:count], detections["detection_scores"][:count],
                                    detections["detection_classes"][:count]):
        if score < min_score:
            continue
        ymin, xmin, ymax, xmax = [float(v) for v in box]
        color = _color(int(class_id))
        draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=width)
        text = "%s %.2f" % ((label_map or {}).get(int(class_id), str(int(class_id))), score)
        left, top, right, bottom = draw.textbbox((xmin, ymin), text, font=font)
        top_shift = min(bottom - top + 2, ymin)  # label above the box unless it would leave the picture
        draw.rectangle([left, top - top_shift, right + 2, bottom - top_shift], fill=color)
        draw.text((xmin + 1, ymin - top_shift), text, fill=(0, 0, 0), font=font)
    return picture
