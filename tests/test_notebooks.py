"""The notebooks run top to bottom (on a slice of 1,500 SST-2 training rows)."""

import pathlib

import pytest

from conftest import REPO, SHARED

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "distillation", "tflite_export", "auto_compress"}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, sst2_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TFCOMPRESS_SST2", str(sst2_dir))
    monkeypatch.setenv("TFCOMPRESS_NOTEBOOK_ROWS", "1500")
    monkeypatch.setenv("NLTK_DATA", str(SHARED / "nltk_data"))
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:  # committed without outputs
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has saved outputs"
    client = nbclient.NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(pathlib.Path(tmp_path).rglob("*.tflite"))
