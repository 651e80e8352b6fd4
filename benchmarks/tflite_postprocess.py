"""TFLite time of D0's post-processing alone, and of its best-class step with each reduction.

    python -m benchmarks.tflite_postprocess [--runs 10] [--num_threads 2]

Converts (a) the best-class step ('top_k' and 'max_argmax', see `ops.postprocess.best_class`) and
(b) the whole post-processing (best class, decoding, soft-NMS) for TFLite, with D0's raw-output
shapes at 512 (90 classes), and times them on the same random logits (mostly negative, as a
trained model's are), medians of interleaved rounds.
"""

import argparse

from benchmarks.timing import interleaved_medians
from efficientdet_tf.litert import make_interpreter


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--num_threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from efficientdet_tf import factory
    from efficientdet_tf.config import get_config
    from efficientdet_tf.ops import postprocess

    config = get_config("efficientdet-d0")
    sizes = [config.image_size // 2 ** level for level in range(config.min_level, config.max_level + 1)]
    classes = [tf.TensorSpec([1, s, s, 9 * config.num_classes], tf.float32) for s in sizes]
    boxes = [tf.TensorSpec([1, s, s, 36], tf.float32) for s in sizes]
    graphs = {"best class, top_k": (lambda *c: postprocess.best_class(list(c), config.num_classes, "top_k"), classes),
              "best class, max_argmax": (lambda *c: postprocess.best_class(list(c), config.num_classes, "max_argmax"),
                                         classes)}
    for runtime in ("tensorflow", "tflite"):
        post = factory.build_postprocess_fn(config, runtime=runtime)
        graphs["post-processing, %s kernels" % runtime] = (lambda *t, post=post: post(list(t[:5]), list(t[5:])),
                                                            classes + boxes)
    fns = {}
    for label, (fn, signature) in graphs.items():
        concrete = tf.function(fn, input_signature=signature, autograph=False).get_concrete_function()
        data = tf.lite.TFLiteConverter.from_concrete_functions([concrete], None).convert()
        interpreter = make_interpreter(model_content=data, num_threads=args.num_threads)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            rng = np.random.default_rng(detail["index"])
            interpreter.set_tensor(detail["index"], (rng.normal(size=detail["shape"]) - 5).astype(np.float32))
        fns[label] = interpreter.invoke
    for label, ms in interleaved_medians(fns, args.runs, 2).items():
        print("%-40s %6.1f ms" % (label, ms))


if __name__ == "__main__":
    main()
