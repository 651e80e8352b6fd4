"""SavedModel export for TF Serving: uint8 images, encoded bytes, tf.Example and raw-output signatures."""

import os

import numpy as np
import tensorflow as tf

from efficientdet_tf import factory
from efficientdet_tf.data import schema
from efficientdet_tf.export.fold import fold_batch_norms, folding_error
from efficientdet_tf.inference import raw_output_dict
from efficientdet_tf.ops.image_decoding import decode_image

FOLD_TOLERANCE = 1e-4


def check_picture(size):
    """A deterministic natural-looking uint8 picture [size, size, 3]: gradients and flat rectangles."""
    y, x = np.mgrid[0:size, 0:size] / float(size)
    picture = np.stack([255 * x, 255 * y, 128 + 100 * np.sin(6 * x * y)], axis=-1)
    picture[size // 4: size // 2, size // 5: size // 2] = (220, 40, 40)
    picture[size // 2: 7 * size // 8, size // 2: 9 * size // 10] = (30, 160, 60)
    return picture.astype(np.uint8)


def fold_and_check(model, config):
    """`fold_batch_norms(model)`, verified within FOLD_TOLERANCE (relative above 1) on `check_picture`."""
    folded = fold_batch_norms(model)
    inputs, _ = factory.build_preprocessor(config)(check_picture(config.image_size)[None])
    error = folding_error(model, folded, inputs)
    if error > FOLD_TOLERANCE:
        raise RuntimeError("batch-norm folding changed the outputs by %.3g (> %g)" % (error, FOLD_TOLERANCE))
    return folded


class ServingModule(tf.Module):
    """Holds the (folded) network and the four serving functions of the TF Serving contract."""

    def __init__(self, network, config, jit_compile=False):
        """`jit_compile` XLA-compiles the network part (NMS stays outside XLA)."""
        super().__init__()
        self.network = network
        self._config = config
        self._preprocess = factory.build_preprocessor(config)
        self._postprocess = factory.build_postprocess_fn(config)
        size = config.image_size
        self._run = tf.function(lambda x, training=False: network(x, training=training),
                                jit_compile=jit_compile)

        def images_fn(images):
            inputs, scales = self._preprocess(images)
            return self._detect(inputs, scales)

        def image_bytes_fn(image_bytes):
            # Phone pictures: boxes in the frame every viewer (and efficientdet-infer) shows.
            return self._detect(*self._decode_batch(image_bytes, orientation=True))

        def tf_example_fn(serialized_example):
            # Parse the wire format first: ParseExample's own error quotes the raw bytes, which a
            # Python client cannot even decode (UnicodeDecodeError); this one names the problem.
            proto_check = tf.io.decode_proto(serialized_example, "tensorflow.Example", ["features"], [tf.string],
                                             name="serialized_example_is_not_a_tf_Example")
            # An assert is stateful, so the graph optimiser keeps it and the check before the parse.
            with tf.control_dependencies([tf.debugging.assert_non_negative(proto_check.sizes)]):
                serialized_example = tf.identity(serialized_example)
            features = tf.io.parse_example(
                serialized_example, {schema.ENCODED: tf.io.FixedLenFeature([], tf.string)})
            return self._detect(*self._decode_batch(features[schema.ENCODED]))

        def raw_fn(normalized_images):
            return raw_output_dict(self._run, config, normalized_images)

        self.serve_images = tf.function(images_fn, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        self.serve_image_bytes = tf.function(image_bytes_fn, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes")])
        self.serve_tf_example = tf.function(tf_example_fn, input_signature=[
            tf.TensorSpec([None], tf.string, name="serialized_example")])
        self.predict_raw = tf.function(raw_fn, input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.float32, name="normalized_images")])

    def _decode_batch(self, image_bytes, orientation=False):
        """Decodes and preprocesses each picture on its own (sizes may differ within the batch)."""
        def one(data):
            inputs, scales = self._preprocess(decode_image(data, orientation)[None])
            return inputs[0], scales[0]
        size = self._config.image_size
        return tf.map_fn(one, image_bytes, fn_output_signature=(
            tf.TensorSpec([size, size, 3], tf.float32), tf.TensorSpec([], tf.float32)))

    def _detect(self, inputs, image_scales):
        class_outputs, box_outputs = self._run(inputs)
        return self._postprocess(list(class_outputs), list(box_outputs), image_scales)

    def signatures(self):
        """{signature name: concrete function} for tf.saved_model.save."""
        return {"serving_default": self.serve_images.get_concrete_function(),
                "serve_image_bytes": self.serve_image_bytes.get_concrete_function(),
                "serve_tf_example": self.serve_tf_example.get_concrete_function(),
                "predict_raw": self.predict_raw.get_concrete_function()}


def export_saved_model(network, config, export_dir, version=1, jit_compile=False):
    """Writes a TF Serving SavedModel to `<export_dir>/<version>/` and returns that path.

    Args:
      network: the EfficientDet Keras network with its weights; pass `fold_and_check(model, config)`
        to export the batch-norm-folded graph.
      config: the Config whose `nms` section and image_size the exported graph uses.
      export_dir: model base folder (what TF Serving's --model_base_path points at).
      version: integer version sub-folder.
      jit_compile: XLA-compile the network inside the serving functions.
    """
    module = ServingModule(network, config, jit_compile=jit_compile)
    path = os.path.join(export_dir, str(int(version)))
    # Keras' swish carries a custom gradient that cannot be saved; serving needs no gradients.
    tf.saved_model.save(module, path, signatures=module.signatures(),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    return path
