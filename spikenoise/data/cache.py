"""On-disk feature cache keyed by a hash of everything that determines the features.

Default folder: ``$SPIKENOISE_CACHE`` or ``~/.cache/spikenoise``; entries are ``kws-<key>.pt``.
Writes go to a temporary file that is renamed, so a killed run never leaves a half-written entry.

Safety: the folder is created user-only (``0o700``) and entries are files of mode ``0o600``.
Entries are read with :func:`spikenoise.safeload.safe_torch_load` (tensors and plain data only:
nothing in them is run). Each entry stores its own key; an entry whose stored key differs from
the one it is looked up under (renamed, copied or planted) is ignored and recomputed, as are
damaged entries. An entry that would run code when loaded is refused with a warning naming it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from ..safeload import FileLoadError, UnsafeFileError, safe_torch_load

__all__ = ["cache_root", "cache_key", "load_entry", "save_entry"]

# Bump when the meaning or layout of cached files changes, so stale entries are never reused.
# 2: entries wrapped as {"format", "key", "entry"} (new keys, so version-1 readers never meet them).
CACHE_VERSION = 2
ENTRY_FORMAT = "spikenoise.cache"


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
    """The cached dict for ``key``, or ``None`` (missing, damaged, refused or mislabelled: recompute)."""
    p = _path(cache_root(cache_dir), key)
    if not p.is_file():
        return None
    try:
        stored = safe_torch_load(p, what="feature-cache entry")
    except UnsafeFileError as e:
        warnings.warn(f"{e} The entry is ignored and recomputed.", RuntimeWarning, stacklevel=2)
        return None
    except (FileLoadError, OSError) as e:
        warnings.warn(f"damaged feature-cache entry ignored and recomputed ({e})", RuntimeWarning, stacklevel=2)
        return None
    # entries written before keys were stored (no wrapper) are recomputed once, like mislabelled ones
    if not (isinstance(stored, dict) and stored.get("format") == ENTRY_FORMAT and stored.get("key") == key
            and isinstance(stored.get("entry"), dict)):
        return None
    return stored["entry"]


def _make_private_dir(root: Path) -> None:
    """Create ``root`` (and missing parents) readable by the user only; existing folders are kept as they are."""
    if root.is_dir():
        return
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # mkdir's mode is masked by the umask; chmod is not


def save_entry(cache_dir: str | Path | None, key: str, entry: dict) -> Path | None:
    """Store ``entry`` under ``key``; a read-only or full disk only costs the cache, never the run."""
    root = cache_root(cache_dir)
    tmp = None
    try:
        _make_private_dir(root)
        fd, tmp = tempfile.mkstemp(prefix=".kws-", suffix=".tmp", dir=root)  # mode 0o600
        os.close(fd)
        torch.save({"format": ENTRY_FORMAT, "key": key, "entry": entry}, tmp)
        os.replace(tmp, _path(root, key))
        tmp = None
        return _path(root, key)
    except OSError:
        return None
    finally:  # whatever stopped the save (full disk, an interrupt), no temporary file stays behind
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
