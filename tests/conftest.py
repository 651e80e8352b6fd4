"""Shared test fixtures: where the reference data lives."""

import os

import pytest

REFERENCE_DIR = os.environ.get(
    "EFFICIENTDET_REFERENCE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "reference"))


@pytest.fixture(scope="session")
def d0_reference_dir():
    path = os.path.join(REFERENCE_DIR, "efficientdet-d0")
    if not os.path.isfile(os.path.join(path, "model.index")):
        pytest.fail("reference data missing at %s (set EFFICIENTDET_REFERENCE_DIR)" % path)
    return path
