"""Counts everything a converter skipped, changed or noted, and prints the summary."""

import collections

# Kinds that mean the output differs from the input: `--strict` fails on any of them.
ISSUES = {
    "box_clipped": "boxes clipped to the picture",
    "box_empty_skipped": "boxes of zero or negative size skipped",
    "box_outside_skipped": "boxes entirely outside the picture skipped",
    "box_invalid_skipped": "boxes with missing or non-finite coordinates skipped",
    "unknown_category_skipped": "boxes with an unknown category skipped",
    "unknown_image_skipped": "annotations of an image id not in the image list skipped",
    "duplicate_image_skipped": "duplicate image ids skipped",
    "image_missing_skipped": "pictures missing (skipped)",
    "image_unreadable_skipped": "pictures unreadable (skipped)",
    "boxes_of_skipped_images": "boxes dropped with skipped pictures",
    "annotation_missing_skipped": "pictures without a readable annotation file (skipped)",
    "label_line_malformed_skipped": "malformed label lines skipped",
    "image_converted": "pictures converted to RGB JPEG",
    "image_size_mismatch": "pictures whose real size differs from the annotation (real size used)",
    "image_exif_rotated": "pictures rotated by their EXIF orientation (boxes taken as drawn on the rotated picture)",
    "category_id_zero": "category id 0 is padding: every category id shifted by +1 in the records, label map and "
                        "ground-truth JSON (evaluate with --gt_json_file's output)",
}
# Kinds that are reported but are not a change of the data the user asked for.
NOTES = {
    "negative_image": "pictures without boxes kept as negatives",
    "difficult_skipped": "difficult objects left out (--ignore_difficult)",
    "image_exif_ignored": "pictures with an EXIF rotation kept as stored (the annotation gives the stored size)",
}

_EXAMPLES_PER_KIND = 10


class ConversionReport:
    """Counters per kind of event, with the first few details of each kind for the summary."""

    def __init__(self):
        self.counts = collections.Counter()
        self.details = collections.defaultdict(list)

    def add(self, kind, detail="", count=1):
        """Counts `count` events of `kind` (a key of ISSUES or NOTES); `detail` names the file/box."""
        if kind not in ISSUES and kind not in NOTES:
            raise KeyError("unknown report kind %r" % kind)
        if count <= 0:
            return
        self.counts[kind] += count
        if detail and len(self.details[kind]) < _EXAMPLES_PER_KIND:
            self.details[kind].append(detail)

    def merge(self, other):
        """Adds the counts and details of another report (e.g. one picture's) to this one."""
        for kind, count in other.counts.items():
            self.counts[kind] += count
            room = _EXAMPLES_PER_KIND - len(self.details[kind])
            self.details[kind].extend(other.details[kind][:max(room, 0)])

    def has_issues(self):
        """True when anything was skipped or changed (what `--strict` refuses)."""
        return any(self.counts[kind] for kind in ISSUES)

    def summary(self, title="conversion summary"):
        """Multi-line text: one line per non-zero count, followed by example details."""
        lines = [title + ":"]
        for kind, text in list(ISSUES.items()) + list(NOTES.items()):
            if not self.counts[kind]:
                continue
            lines.append("  %-8d %s" % (self.counts[kind], text))
            more = self.counts[kind] - len(self.details[kind])
            for detail in self.details[kind]:
                lines.append("             - " + detail)
            if more > 0 and self.details[kind]:
                lines.append("             ... and %d more" % more)
        if len(lines) == 1:
            lines.append("  nothing skipped or changed")
        return "\n".join(lines)
