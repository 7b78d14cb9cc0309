"""The notebook runs top to bottom, with tiny parameters, in a temporary project."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

PROJECT = Path(__file__).resolve().parents[1]
TINY = """
OVERRIDES = ["run.name=notebook", "train.epochs=1", "model.width=4", "model.depth=2"]
CASES = 12
FOLDS = 2
EXPLAIN_CASES = 1
"""


@pytest.mark.slow
def test_notebook_runs_the_whole_pipeline(project: Path) -> None:
    nb = nbformat.read(PROJECT / "notebooks" / "pipeline.ipynb", as_version=4)
    nbformat.validate(nb)
    sources = "\n".join(cell.source for cell in nb.cells)
    assert "%load_ext autoreload" in sources and "%autoreload 2" in sources
    parameters = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    parameters[0].source = TINY
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(project)}}
    )
    client.execute()
    (run,) = sorted((project / "runs").iterdir())
    assert (run / "evaluation" / "val" / "metrics.json").exists()
    assert "## Interpretability" in (run / "MODEL_CARD.md").read_text()
    assert any((run / "explain" / "gradcam").glob("*.png"))
    images = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(images) >= 4  # loss, metrics, evaluation figure(s), Grad-CAM map
