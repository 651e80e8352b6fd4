"""Shared test fixtures (the D0 reference data, shapes TFRecords) and the test tiers.

Tiers: unit tests (the default), `integration` (train, export, evaluate: every test in the modules
of INTEGRATION_MODULES) and `e2e` (the demo, the notebooks, the README's commands). README's test
command runs unit and integration tests; `slow` marks the long tests of any tier, which `.ci/run`
runs too.
"""

import os

import pytest

from helpers import make_shapes_records
from reference_data import DATA_DIR, materialise

# A directory holding a full reference (efficientdet-d0/model.index ...) overrides the copy in tests/data.
REFERENCE_DIR = os.environ.get("EFFICIENTDET_REFERENCE_DIR", "")


@pytest.fixture(scope="session")
def d0_reference_dir(tmp_path_factory):
    """A directory laid out like the reference: model.index/.data (TF1 checkpoint with EMA copies),
    reference_outputs.npz, reference_meta.json, training_reference.npz."""
    if REFERENCE_DIR:
        path = os.path.join(REFERENCE_DIR, "efficientdet-d0")
        if not os.path.isfile(os.path.join(path, "model.index")):
            pytest.fail("EFFICIENTDET_REFERENCE_DIR: no reference checkpoint at %s" % path)
        return path
    compact = os.path.join(DATA_DIR, "efficientdet-d0")
    if not os.path.isfile(os.path.join(compact, "checkpoint_ema.npz")):
        pytest.fail("reference data missing at %s (or set EFFICIENTDET_REFERENCE_DIR)" % compact)
    return materialise(compact, str(tmp_path_factory.mktemp("reference") / "efficientdet-d0"))


@pytest.fixture(scope="session")
def shapes_records(tmp_path_factory):
    """One training TFRecord of 16 shapes pictures (5 classes, 128-160 px), made once per session."""
    return make_shapes_records(tmp_path_factory.mktemp("shapes"))


INTEGRATION_MODULES = ("test_train", "test_train_distributed", "test_train_resume", "test_train_state",
                       "test_train_preemption", "test_train_clipping", "test_train_accumulation", "test_train_recompute", "test_train_parity",
                       "test_train_step_parity", "test_export", "test_tflite_graph", "test_calibration",
                       "test_eval", "test_runtimes", "test_edge", "test_openvino", "test_serving_load", "test_process_state", "test_download")
E2E_MODULES = ("test_demo", "test_notebooks", "test_readme")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
        elif module in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)
