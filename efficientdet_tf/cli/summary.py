"""efficientdet-summary: weights, variables, multiply-adds and output shapes of one model."""

from absl import flags

from efficientdet_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_name", "efficientdet-d0", "Model name, e.g. efficientdet-d3 or efficientdet-lite0.")
flags.DEFINE_string("hparams", "", "Overrides: 'a=1,b.c=x' or a yaml file.")


def summarize(model):
    """A dict describing `model`: weights, variables, multiply-adds and per-level output shapes."""
    import numpy as np

    from efficientdet_tf.model.flops import count_macs
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    class_outputs, box_outputs = model.outputs[:len(model.outputs) // 2], model.outputs[len(model.outputs) // 2:]
    cfg = model.config
    levels = {}
    for level, c, b in zip(range(cfg.min_level, cfg.max_level + 1), class_outputs, box_outputs):
        levels[level] = {"class": list(c.shape[1:]), "box": list(b.shape[1:])}
    return {"model": model.name, "image_size": cfg.image_size, "total_weights": total,
            "trainable_weights": trainable, "variables": len(model.weights),
            "flops": count_macs(model), "levels": levels}


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    from efficientdet_tf.model.efficientdet import build_model
    info = summarize(build_model(FLAGS.model_name, FLAGS.hparams or None))
    print("model              %s (input %d x %d x 3)" % (info["model"], info["image_size"], info["image_size"]))
    print("total weights      {:,}".format(info["total_weights"]))
    print("trainable weights  {:,}".format(info["trainable_weights"]))
    print("variables          {:,}".format(info["variables"]))
    print("FLOPs (mult-adds)  {:,} ({:.2f}B)".format(info["flops"], info["flops"] / 1e9))
    for level, shapes in info["levels"].items():
        print("P%d  class %-18s box %s" % (level, shapes["class"], shapes["box"]))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
