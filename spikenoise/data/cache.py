"""On-disk feature cache keyed by a hash of everything that determines the features.

Default folder: ``$SPIKENOISE_CACHE`` or ``~/.cache/spikenoise``; entries are ``kws-<key>.pt``.
Writes go to a temporary file that is renamed, so a killed run never leaves a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_root", "cache_key", "load_entry", "save_entry"]

# Bump when the meaning of cached tensors changes, so stale entries are never reused.
CACHE_VERSION = 1


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SPIKENOISE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spikenoise"


def cache_key(spec: Any) -> str:
    """Stable 20-hex-digit key of a JSON-serializable description."""
    blob = json.dumps({"v": CACHE_VERSION, "spec": spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _path(root: Path, key: str) -> Path:
    return root / f"kws-{key}.pt"


def load_entry(cache_dir: str | Path | None, key: str) -> dict | None:
    """The cached dict for ``key``, or ``None`` (missing or unreadable entries are recomputed)."""
    p = _path(cache_root(cache_dir), key)
    if not p.is_file():
        return None
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception:
        return None


def save_entry(cache_dir: str | Path | None, key: str, entry: dict) -> Path | None:
    """Store ``entry``; a read-only or full disk only costs the cache, never the run."""
    root = cache_root(cache_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".kws-", suffix=".tmp", dir=root)
        os.close(fd)
        torch.save(entry, tmp)
        os.replace(tmp, _path(root, key))
        return _path(root, key)
    except OSError:
        try:
            os.unlink(tmp)  # type: ignore[possibly-undefined]
        except Exception:
            pass
        return None
