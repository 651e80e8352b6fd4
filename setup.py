"""Installs efficientdet_tf and tfrecord_tools."""

from setuptools import find_packages, setup

setup(
    name="efficientdet_tf",
    version="0.1.0",
    description="EfficientDet D0-D7x and Lite0-Lite4 for TensorFlow 2.21 / Keras 3",
    # hparams/ is a top-level folder of the repository and ships inside the package as
    # efficientdet_tf.hparams, so every install layout (--target, --prefix, --user, wheels) finds it.
    packages=find_packages(include=["efficientdet_tf", "efficientdet_tf.*", "tfrecord_tools", "tfrecord_tools.*"])
    + ["efficientdet_tf.hparams"],
    package_dir={"efficientdet_tf.hparams": "hparams"},
    package_data={"efficientdet_tf.hparams": ["*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "numpy>=1.26,<3",
        "pyyaml>=6",
        "absl-py>=2.1",
        "pillow>=10",
        "pycocotools>=2.0.8",
        "matplotlib>=3.8",
        # tf.summary (training curves) needs it; the tensorflow wheel no longer pulls it in.
        "tensorboard>=2.21,<2.22",
    ],
    extras_require={
        "test": ["pytest>=8", "jax[cpu]>=0.6", "tensorflow-datasets>=4.9", "nbclient>=0.10", "nbformat>=5.10",
                 "ipykernel>=6.29", "tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20",
                 "mediapipe>=1.2.2", "ai-edge-litert>=2.3", "openvino>=2026.0", "nncf>=2.19"],
        # ONNX export (tf2onnx, onnx) and the ONNX Runtime detector; imported only when used.
        "onnx": ["tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20"],
        "tfds": ["tensorflow-datasets>=4.9"],
        # Devices: TFLite metadata for MediaPipe Tasks / the Task Library, and the LiteRT interpreter.
        "edge": ["mediapipe>=1.2.2", "ai-edge-litert>=2.3"],
        # OpenVINO export (from the SavedModel) and the OpenVINO detector; imported only when used.
        "openvino": ["openvino>=2026.0", "nncf>=2.19"],
        "bench": ["torch", "torchvision", "effdet", "timm", "omegaconf"],
    },
    entry_points={
        "console_scripts": [
            "efficientdet-summary=efficientdet_tf.cli.summary:run",
            "efficientdet-demo=efficientdet_tf.cli.demo:run",
            "efficientdet-eval=efficientdet_tf.cli.eval:run",
            "efficientdet-export=efficientdet_tf.cli.export:run",
            "efficientdet-infer=efficientdet_tf.cli.infer:run",
            "efficientdet-train=efficientdet_tf.cli.train:run",
            "create_coco_tfrecord=tfrecord_tools.cli:create_coco_tfrecord",
            "create_voc_tfrecord=tfrecord_tools.cli:create_voc_tfrecord",
            "create_yolo_tfrecord=tfrecord_tools.cli:create_yolo_tfrecord",
            "inspect_tfrecord=tfrecord_tools.cli:inspect_tfrecord",
            "make_shapes_dataset=tfrecord_tools.cli:make_shapes_dataset",
        ],
    },
)
