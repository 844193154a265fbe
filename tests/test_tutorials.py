"""The tutorial notebooks (tutorials/*.ipynb) run top to bottom, and are stored without outputs.

Each notebook is executed with nbclient in a fresh temporary working directory by a kernel of
*this* interpreter (a throw-away kernelspec pointing at ``sys.executable``), so the test sees the
spikenoise installed here whatever kernels the user has registered. A failing cell fails the
test with the cell's traceback. The execution time of every notebook is recorded with the
spikenoise pytest plugin and shown in the table at the end of the run.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(p.stem for p in TUTORIALS.glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell: generous, CI machines are slow and shared
KERNEL_NAME = "spikenoise-tutorial-test"


def _read(path: Path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(str(path), as_version=4)


def _kernel_manager(tmp: Path):
    """A KernelManager whose only kernelspec runs ipykernel on ``sys.executable``."""
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "spikenoise tutorial test", "language": "python"}))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)


def _needs_embedded_data(nb) -> bool:
    return any(c.cell_type == "code" and 'load_kws("embedded"' in c.source for c in nb.cells)


def test_tutorials_exist():
    for expected in ("01_quickstart", "02_dynamic_errors_average_out", "03_error_aware_training"):
        assert expected in NOTEBOOKS, f"tutorials/{expected}.ipynb is missing"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_is_clean(notebook):
    """Stored without outputs (small diffs, small repo), valid, seeded, with a markdown intro."""
    nbformat = pytest.importorskip("nbformat")
    path = TUTORIALS / f"{notebook}.ipynb"
    nb = _read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: cell {i} has stored outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"
    assert nb.cells and nb.cells[0].cell_type == "markdown", f"{path.name} should open with a markdown cell"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "manual_seed" in code, f"{path.name} should seed its RNGs"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs(notebook, tmp_path, sn_record):
    pytest.importorskip("nbclient")
    from nbclient import NotebookClient

    path = TUTORIALS / f"{notebook}.ipynb"
    nb = _read(path)
    if _needs_embedded_data(nb):
        from spikenoise.data import _espeak

        if not _espeak.available():
            pytest.skip("the embedded KWS data needs the 'espeakng-loader' package, which is not installed")
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(nb, km=_kernel_manager(tmp_path), kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(work)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell's traceback) on the first failing cell
    sn_record("seconds", time.perf_counter() - t0)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
