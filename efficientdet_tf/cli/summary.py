"""efficientdet-summary: weights, variables, multiply-adds and output shapes; every model or every topology."""

from absl import flags

from efficientdet_tf.cli import common
from efficientdet_tf.model.flops import summarize

FLAGS = flags.FLAGS
flags.DEFINE_string("model_name", "efficientdet-d0", "Model name, e.g. efficientdet-d3 or efficientdet-lite0.")
flags.DEFINE_string("hparams", "", "Overrides: 'a=1,b.c=x' or a yaml file.")
flags.DEFINE_bool("all", False, "Weights and multiply-adds of every model beside the published figures.")
flags.DEFINE_bool("compare_fpn", False, "Weights and multiply-adds of --model_name with each feature-network "
                  "topology (fpn_name), relative to the top-down FPN, whole model and feature network alone.")
flags.DEFINE_string("plot", "", "With --all: write a PNG of weights and multiply-adds against D0..D7x here.")

def summarize_all(names=None):
    """[(name, summary)] for every model (or `names`), built one at a time."""
    import keras

    from efficientdet_tf.config import model_names
    from efficientdet_tf.model.efficientdet import build_model
    rows = []
    for name in names or model_names():
        rows.append((name, summarize(build_model(name))))
        keras.backend.clear_session()  # the big models would otherwise pile up in memory
    return rows


def compare_fpn(model_name, hparams=None):
    """{fpn_name: summary} of `model_name` built with each topology (same width, repeats, backbone)."""
    import keras

    from efficientdet_tf.config import get_config
    from efficientdet_tf.model.efficientdet import build_model
    from efficientdet_tf.model.fpn_topologies import FPN_NAMES
    out = {}
    for fpn_name in FPN_NAMES:
        config = get_config(model_name, hparams).replace({"fpn_name": fpn_name, "fpn_config": []})
        out[fpn_name] = summarize(build_model(config))
        keras.backend.clear_session()
    return out


def plot_sizes(rows, path):
    """PNG of trainable weights and multiply-adds of the D models against their index, with the paper's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from efficientdet_tf.model.published import PUBLISHED
    rows = [(name, info) for name, info in rows if not name.startswith("efficientdet-lite")]
    labels = [name.replace("efficientdet-", "").upper() for name, _ in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, scale, index, unit in ((axes[0], "trainable_weights", 1e6, 0, "weights (M)"),
                                          (axes[1], "flops", 1e9, 1, "multiply-adds (B)")):
        axis.plot(labels, [info[key] / scale for _, info in rows], "o-", label="efficientdet_tf")
        axis.plot(labels, [PUBLISHED[name][index] for name, _ in rows], "x--", label="paper")
        axis.set_yscale("log")
        axis.set_ylabel(unit)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle("EfficientDet D0-D7x: size against model index")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _print_model(info):
    print("model              %s (input %d x %d x 3)" % (info["model"], info["image_size"], info["image_size"]))
    print("total weights      {:,}".format(info["total_weights"]))
    print("trainable weights  {:,}".format(info["trainable_weights"]))
    print("variables          {:,}".format(info["variables"]))
    print("FLOPs (mult-adds)  {:,} ({:.2f}B)".format(info["flops"], info["flops"] / 1e9))
    print("feature network    {:,} weights, {:.2f}B mult-adds".format(info["fpn_weights"], info["fpn_flops"] / 1e9))
    for level, shapes in info["levels"].items():
        print("P%d  class %-18s box %s" % (level, shapes["class"], shapes["box"]))


def _print_all(rows):
    from efficientdet_tf.model.published import PUBLISHED
    print("| model | weights (M) | paper | mult-adds (B) | paper |")
    print("|---|---|---|---|---|")
    for name, info in rows:
        paper_w, paper_f = PUBLISHED.get(name, (None, None))
        print("| %s | %.2f | %s | %.2f | %s |" % (name, info["trainable_weights"] / 1e6, paper_w or "-",
                                                 info["flops"] / 1e9, paper_f or "-"))


def _print_fpn(model_name, table):
    from efficientdet_tf.model.published import PAPER_FPN_RATIOS
    base = table["fpn"]
    print("%s: each topology relative to the top-down FPN (same backbone, width, repeats)" % model_name)
    print("| fpn_name | weights | mult-adds | feature-net weights | feature-net mult-adds | paper weights / mult-adds |")
    print("|---|---|---|---|---|---|")
    for name, info in table.items():
        paper = PAPER_FPN_RATIOS.get(name)
        print("| %s | %.3f | %.3f | %.3f (%.2fM) | %.3f (%.2fB) | %s |" % (
            name, info["trainable_weights"] / base["trainable_weights"], info["flops"] / base["flops"],
            info["fpn_weights"] / base["fpn_weights"], info["fpn_weights"] / 1e6,
            info["fpn_flops"] / base["fpn_flops"], info["fpn_flops"] / 1e9,
            "%.2f / %.2f" % paper if paper else "-"))


def main(argv):
    if len(argv) > 1:
        raise common.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if FLAGS.plot and not FLAGS.all:
        raise common.UsageError("--plot needs --all")
    if FLAGS.all:
        rows = summarize_all()
        _print_all(rows)
        if FLAGS.plot:
            plot_sizes(rows, FLAGS.plot)
            print("plot: %s" % FLAGS.plot)
    elif FLAGS.compare_fpn:
        _print_fpn(FLAGS.model_name, compare_fpn(FLAGS.model_name, FLAGS.hparams or None))
    else:
        from efficientdet_tf.model.efficientdet import build_model
        _print_model(summarize(build_model(FLAGS.model_name, FLAGS.hparams or None)))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
