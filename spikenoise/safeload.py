"""Reading ``.pt`` files without running code.

Every ``.pt`` file spikenoise reads back (training checkpoints, feature-cache entries) goes through
:func:`safe_torch_load`: ``torch.load(weights_only=True)``, whose unpickler builds only tensors,
plain Python containers and numbers/strings, plus the few types below. A file that asks for any
other object -- such as a ``__reduce__`` payload that would call a function while being read -- is
refused with :class:`UnsafeFileError` before anything is called.

Allowed beyond PyTorch's defaults: NumPy arrays and dtypes (the RNG state of checkpoints written
by spikenoise 0.1.0 before this module existed holds NumPy's generator key as an array; arrays of
these dtypes are plain data).
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FileLoadError", "UnsafeFileError", "safe_torch_load", "SAFE_GLOBALS"]


def _numpy_safe_globals() -> list[Any]:
    # numpy >= 2 moved _reconstruct to numpy._core; older pickles name numpy.core.
    core = getattr(np, "_core", None) or np.core
    found: list[Any] = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    found += [type(np.dtype(t)) for t in ("u4", "i4", "i8", "u8", "f4", "f8", "u1", "i1", "u2", "i2", "f2", "?")]
    return found


#: Types a file may name besides PyTorch's weights-only defaults.
SAFE_GLOBALS: list[Any] = _numpy_safe_globals()


class FileLoadError(ValueError):
    """A file could not be read back (damaged, truncated, or not a PyTorch file); ``.path`` names it."""

    def __init__(self, message: str, path: str | os.PathLike):
        super().__init__(message)
        self.path = Path(path)


class UnsafeFileError(FileLoadError):
    """A file was refused: reading it would have to import or call objects beyond plain data."""


def _unsafe_names(path: Path) -> list[str]:
    """Globals a zip-format torch file names that the weights-only loader does not allow (read, not run)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip file, or a torch without this helper: the message just gets shorter
        return []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    return [n for n in names if n not in allowed]


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu",
                    what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` with :data:`SAFE_GLOBALS` allowed.

    Args:
        path: the ``.pt`` file.
        map_location: as for ``torch.load``.
        what: a few words on what the file is (``"checkpoint"``), used in error messages.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeFileError: the file holds objects whose loading could run code; nothing was run.
        FileLoadError: the file is damaged or not a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        garbage = re.findall(r"Unsupported operand \d+", msg)
        if not garbage:
            named = re.findall(r"GLOBAL (\S+) was not an allowed global", msg)
            names = _unsafe_names(path) or named
            detail = f" (it names {', '.join(names)})" if names else ""
            raise UnsafeFileError(
                f"refused to load {what} {path}: it holds objects other than tensors and plain data{detail}, "
                "whose loading could run code. Nothing from it was run. Only load files you or spikenoise "
                "wrote; if you trust this file, load it yourself with torch.load(..., weights_only=False).",
                path) from None
        # an opcode the weights-only reader does not know: a raw pickle or garbage, never run either
        raise FileLoadError(f"cannot read {what} {path}: damaged or not written by torch.save "
                            f"({garbage[0]}); nothing from it was run", path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise FileLoadError(f"cannot read {what} {path}: damaged or not a PyTorch file "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", path) from None
