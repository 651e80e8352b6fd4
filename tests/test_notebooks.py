"""The Colab notebooks run top to bottom in smoke mode (EFFICIENTDET_SMOKE=1: small, nothing downloaded)."""

import os

import pytest

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def _execute(name, workdir):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    for cell in notebook.cells:  # committed without outputs, so what runs is what users get
        assert not cell.get("outputs"), "%s is committed with outputs" % name
    os.environ["EFFICIENTDET_SMOKE"] = "1"
    try:
        nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        del os.environ["EFFICIENTDET_SMOKE"]
    return notebook


@pytest.mark.slow
def test_quickstart_runs_top_to_bottom(tmp_path):
    notebook = _execute("quickstart.ipynb", tmp_path)
    text = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
    assert "the SavedModel agrees with the Detector" in text
    assert (tmp_path / "quickstart_out" / "export" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "quickstart_out" / "efficientdet-d0_fp32.tflite").is_file()


@pytest.mark.slow
def test_train_custom_data_runs_top_to_bottom(tmp_path):
    notebook = _execute("train_custom_data.ipynb", tmp_path)
    text = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
    assert "num_classes = 5" in text and "TFLite:" in text
    out = tmp_path / "custom_out"
    assert (out / "eval" / "metrics.json").is_file() and (out / "export" / "1" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (out / "model").glob("ckpt-*.index"))
