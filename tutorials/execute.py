"""Execute tutorial notebooks and store them with their outputs.

    .venv/bin/python tutorials/execute.py                      # every tutorials/*.ipynb
    .venv/bin/python tutorials/execute.py tutorials/07_bring_your_own_snn.ipynb

Each notebook runs in a fresh temporary working directory on a kernel of *this* interpreter (a
throw-away kernelspec pointing at ``sys.executable``, so the spikenoise installed here is used
whatever kernels are registered), without per-cell timing metadata (small, stable diffs), and
with this checkout's absolute path removed from stored text (warnings print file paths). A failing
cell stops with its traceback and leaves the file unchanged.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

KERNEL = "spikenoise-tutorial"
ROOT = Path(__file__).resolve().parents[1]


def scrub(nb) -> None:
    """Remove this checkout's absolute path from the notebook's text outputs (in place)."""
    prefix = str(ROOT) + "/"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = out["text"].replace(prefix, "")
            for key, value in out.get("data", {}).items():
                if key.startswith("text/") and isinstance(value, str):
                    out["data"][key] = value.replace(prefix, "")


def execute(path: Path, timeout: int = 600) -> float:
    """Run notebook ``path`` top to bottom and write it back with outputs; returns seconds."""
    nb = nbformat.read(str(path), as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "kernels" / KERNEL
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python"}))
        km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]))
        work = Path(tmp) / "work"
        work.mkdir()
        client = NotebookClient(nb, km=km, kernel_name=KERNEL, timeout=timeout, record_timing=False,
                                resources={"metadata": {"path": str(work)}})
        t0 = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - t0
    scrub(nb)
    # keep the kernelspec the notebook names for readers, not the throw-away one
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nbformat.write(nb, str(path))
    return seconds


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or sorted((Path(__file__).parent).glob("*.ipynb"))
    for p in paths:
        if p.suffix != ".ipynb" or not p.exists():
            raise SystemExit(f"not a notebook: {p}")
        print(f"{p.name}: {execute(p):.0f} s, {p.stat().st_size / 1e3:.0f} kB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
