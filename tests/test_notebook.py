"""The CT notebook (demos/ct_tomography.ipynb) runs top to bottom in its tiny configuration."""
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "demos" / "ct_tomography.ipynb"


def test_ct_notebook_runs_in_its_tiny_configuration(monkeypatch):
    root = str(NOTEBOOK.parents[1])
    monkeypatch.setenv("CIL_GENREG_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" is ipykernel's native kernel: jupyter_client finds it in the interpreter that
    # has ipykernel installed, with no kernelspec registered
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": root}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    for name in ("FBP", "TV", "soft", "TV + soft"):
        assert f"{name} " in outputs and "PSNR" in outputs

