"""Shared test fixtures: the D0 reference data (the compact copy in tests/data, or a full copy)."""

import os

import pytest

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
