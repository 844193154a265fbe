"""The tutorial notebooks (tutorials/*.ipynb) run top to bottom, and are stored with their outputs.

Readers see every table and plot without running anything, so each notebook is stored executed
(every code cell has run, no error output, file under ``MAX_BYTES``); CI re-executes them all.

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
MAX_BYTES = 1_000_000  # stored notebook with outputs: keep the repository small
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
    for expected in ("01_quickstart", "02_dynamic_errors_average_out", "03_error_aware_training",
                     "07_bring_your_own_snn"):
        assert expected in NOTEBOOKS, f"tutorials/{expected}.ipynb is missing"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_is_stored_executed(notebook):
    """Stored with outputs (readable without running), in order, without errors; small; valid,
    seeded, with a markdown intro."""
    nbformat = pytest.importorskip("nbformat")
    path = TUTORIALS / f"{notebook}.ipynb"
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes; shrink its figures"
    root = str(TUTORIALS.parent) + "/"
    assert root not in path.read_text(), f"{path.name} stores this machine's path {root}; store it with execute.py"
    nb = _read(path)
    nbformat.validate(nb)
    counts = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source.strip():
            assert cell.execution_count is not None, (
                f"{path.name}: cell {i} was not executed; store the notebook with outputs "
                "(see tutorials/README.md)")
            counts.append(cell.execution_count)
            assert not [o for o in cell.outputs if o.get("output_type") == "error"], f"{path.name}: cell {i} failed"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{path.name}: cells ran out of order"
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), f"{path.name} has no outputs"
    assert nb.cells and nb.cells[0].cell_type == "markdown", f"{path.name} should open with a markdown cell"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "manual_seed" in code, f"{path.name} should seed its RNGs"


def test_readme_commands_use_installed_tools():
    """Every ``.venv/bin/<tool>`` the tutorials README tells readers to run is installed by the
    set-up (.ci/setup installs ``.[test]``), and the script it names exists."""
    import re
    readme = (TUTORIALS / "README.md").read_text()
    tools = set(re.findall(r"\.venv/bin/([\w.-]+)", readme))
    assert tools, "tutorials/README.md should give the commands to run a notebook"
    bindir = Path(sys.executable).parent
    for tool in tools:
        assert (bindir / tool).exists(), f"tutorials/README.md runs .venv/bin/{tool}, which is not installed"
    assert ".venv/bin/python tutorials/execute.py" in readme and (TUTORIALS / "execute.py").exists()


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
