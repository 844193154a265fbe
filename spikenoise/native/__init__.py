"""Optional native (C) kernels for the hottest sampling loops, built on first use.

Plain C called through :mod:`ctypes` (no Python or torch headers), so a build takes about a second
with the system C compiler (``$CC``, else ``cc``). Each ``<name>.c`` in this folder becomes one
shared library, cached under ``$SPIKENOISE_CACHE/native`` (default ``~/.cache/spikenoise/native``)
and keyed by a hash of its sources and flags, so an edit or a new compiler rebuilds it.

``SPIKENOISE_NATIVE`` chooses: ``auto`` (default: use a kernel when it builds, else the pure-torch
path, with one warning saying why), ``0`` (never: pure torch), ``1`` (required: raise if a kernel
does not build). Both paths draw from the same exact distributions (the tests check each against
brute force); they use different random streams, so their samples differ for the same seed.
Native kernels run on CPU tensors only; CUDA tensors always take the torch path.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["MODES", "mode", "load", "available", "key_from", "ptr", "build_error"]

MODES = ("auto", "0", "1")
_HERE = Path(__file__).resolve().parent
_FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-fno-math-errno"]
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
_errors: dict[str, str] = {}


def mode() -> str:
    """The ``SPIKENOISE_NATIVE`` setting, checked: ``"auto"``, ``"0"`` or ``"1"``."""
    m = os.environ.get("SPIKENOISE_NATIVE", "auto").strip().lower() or "auto"
    if m not in MODES:
        raise ValueError(f"SPIKENOISE_NATIVE must be one of {MODES}, got {m!r}")
    return m


def _cache_dir() -> Path:
    base = os.environ.get("SPIKENOISE_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "spikenoise"
    return root / "native"


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _sources(name: str) -> list[Path]:
    src = _HERE / f"{name}.c"
    if not src.is_file():
        raise ValueError(f"no native kernel named {name!r} (expected {src})")
    return [src] + sorted(_HERE.glob("*.h"))


def _build(name: str) -> Path:
    sources = _sources(name)  # an unknown name is a ValueError even without a compiler
    cc = _compiler()
    if cc is None:
        raise RuntimeError(f"no C compiler found (tried $CC or 'cc': {os.environ.get('CC') or 'cc'!r})")
    h = hashlib.sha256()
    for p in sources:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(" ".join([cc] + _FLAGS + [sys.platform]).encode())
    out_dir = _cache_dir()
    out = out_dir / f"{name}-{h.hexdigest()[:16]}.so"
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    # build into a private temporary file, then rename: concurrent builders never see a torn library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        last = ""
        for extra in (["-fopenmp"], []):  # OpenMP when the compiler has it
            r = subprocess.run([cc, *_FLAGS, *extra, "-I", str(_HERE), str(_HERE / f"{name}.c"), "-o", tmp],
                               capture_output=True, text=True)
            if r.returncode == 0:
                os.replace(tmp, out)
                return out
            last = (r.stderr or r.stdout).strip()
        raise RuntimeError(f"building native kernel {name!r} failed: {last[-2000:]}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(name: str) -> ctypes.CDLL | None:
    """The built library ``<name>.c``, or None when native kernels are off or it does not build.

    Raises under ``SPIKENOISE_NATIVE=1`` when it does not build; warns once under ``auto``.
    """
    m = mode()
    if m == "0":
        return None
    with _lock:
        if name not in _loaded:
            try:
                _loaded[name] = ctypes.CDLL(str(_build(name)))
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _loaded[name] = None
                _errors[name] = str(exc)
                if m == "auto":
                    warnings.warn(f"spikenoise: native kernel {name!r} unavailable, using the (slower, equally "
                                  f"exact) torch path: {exc}", RuntimeWarning, stacklevel=2)
        lib = _loaded[name]
    if lib is None and m == "1":
        raise RuntimeError(f"SPIKENOISE_NATIVE=1 but native kernel {name!r} is unavailable: {_errors.get(name)}")
    return lib


def available(name: str, *tensors: torch.Tensor) -> bool:
    """True when kernel ``name`` loads and every tensor given lives on the CPU."""
    if any(t.device.type != "cpu" for t in tensors):
        return False
    return load(name) is not None


def build_error(name: str) -> str | None:
    """Why kernel ``name`` did not load (after :func:`load` returned None), else None."""
    return _errors.get(name)


def key_from(generator: torch.Generator | None = None) -> int:
    """A 64-bit stream key drawn from torch's (CPU) random generator: seeds make native draws reproducible."""
    return int(torch.randint(-2 ** 63, 2 ** 63 - 1, (1,), dtype=torch.int64, generator=generator)) & (2 ** 64 - 1)


def ptr(t: torch.Tensor) -> ctypes.c_void_p:
    """The data pointer of a contiguous CPU tensor, for a ctypes call."""
    if not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError(f"native kernels need contiguous CPU tensors, got shape {tuple(t.shape)} on {t.device}")
    return ctypes.c_void_p(t.data_ptr())
