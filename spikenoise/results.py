"""Resumable result files, run metadata and confidence intervals.

A sweep appends one JSON line per finished condition to ``results.jsonl`` and writes the
configuration that produced it to ``config.json`` next to it. Re-running the same sweep skips
every condition already on disk, so a killed run resumes where it stopped and nothing already
computed is lost. Running it with a *different* configuration into the same folder is refused.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["ResultStore", "ResultStoreError", "ConfigMismatchError", "ConflictingRowError", "ResultStoreWarning",
           "BOOKKEEPING_FIELDS", "mean_ci", "environment_info", "to_json_value", "config_differences"]


def mean_ci(values: Iterable[float], confidence: float = 0.95, nan_policy: str = "raise") -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of ``values``.

    Returns ``(mean, 0.0)`` for a single value (no spread can be estimated).

    Args:
        values: real numbers (a sequence, array or 1-D tensor; not a string).
        confidence: in (0, 1).
        nan_policy: ``"raise"`` (default): a NaN or infinite value is a ``ValueError`` naming its
            position; ``"omit"``: NaN values are dropped first (infinite ones still raise).
    """
    if isinstance(values, (str, bytes)):
        raise TypeError(f"mean_ci values must be numbers, got the string {values!r}")
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"mean_ci nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating, np.integer)):
        raise TypeError(f"mean_ci confidence must be a number in (0, 1), got {confidence!r}")
    if not 0.0 < float(confidence) < 1.0:  # also refuses NaN
        raise ValueError(f"mean_ci confidence must be in (0, 1), got {confidence!r}")
    xs: list[float] = []
    for i, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"mean_ci values[{i}] is not a real number: {v!r}") from None
        if math.isnan(x) and nan_policy == "omit":
            continue
        if not math.isfinite(x):
            raise ValueError(f"mean_ci values[{i}] is {x!r}; the mean of non-finite values is meaningless "
                             "(pass nan_policy='omit' to drop NaN values)")
        xs.append(x)
    if not xs:
        raise ValueError("mean_ci needs at least one value, got an empty sequence"
                         + (" (after dropping NaN values)" if nan_policy == "omit" else ""))
    n = len(xs)
    m = sum(xs) / n
    if n == 1:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.5 + float(confidence) / 2.0, n - 1)) * math.sqrt(var / n)
    return m, half


def environment_info() -> dict[str, Any]:
    """Package versions and hardware, recorded in every result file."""
    import torch

    from .version import __version__

    info: dict[str, Any] = {
        "spikenoise": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import snntorch

        info["snntorch"] = snntorch.__version__
    except Exception:  # snntorch is a dependency, but metadata must never crash a run
        info["snntorch"] = None
    return info


def _plain(obj: Any) -> Any:
    """``json.dumps`` fallback for configurations: numbers from tensors / NumPy, ``str`` otherwise (paths)."""
    try:
        return to_json_value(obj)
    except TypeError:
        return str(obj)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_plain)


class ResultStoreError(ValueError):
    """A result folder cannot be used as asked; ``.path`` names the file or folder concerned."""

    def __init__(self, message: str, path: str | os.PathLike):
        super().__init__(message)
        self.path = Path(path)


class ConfigMismatchError(ResultStoreError):
    """The folder holds results of other options; ``.differences`` lists ``(option, old, new)``."""

    def __init__(self, message: str, path: str | os.PathLike, differences: list[tuple[str, Any, Any]]):
        super().__init__(message, path)
        self.differences = differences


class ConflictingRowError(ResultStoreError):
    """Two rows share a key but differ in value; ``.key``, ``.old`` and ``.new`` hold them."""

    def __init__(self, message: str, path: str | os.PathLike, key: Any, old: Any, new: Any):
        super().__init__(message, path)
        self.key, self.old, self.new = key, old, new


class ResultStoreWarning(UserWarning):
    """Something in a result folder was damaged and has been set aside (the message says where)."""


#: Row fields that record how or when a row was made, not what it measured: rows that differ
#: only in these are duplicates, not conflicts (a recomputed row takes a different time).
BOOKKEEPING_FIELDS = ("time", "seconds")

_ABSENT = "(absent)"


def to_json_value(value: Any, name: str = "value") -> Any:
    """``value`` as plain JSON data: None, bool, int, float, str, lists and str-keyed dicts.

    Tensors and NumPy arrays of any shape become numbers or nested lists (``.tolist()``), NumPy
    scalars Python numbers, tuples lists. Non-finite floats are kept (written as ``NaN`` /
    ``Infinity``, which Python's ``json`` reads back).

    Raises:
        TypeError: anything else (e.g. a model, a Path, a set), naming ``name`` (the column).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, np.generic):
        return to_json_value(value.item(), name)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name}: cannot store a NumPy array of dtype {value.dtype} (numbers only)")
        return to_json_value(value.tolist(), name)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None  # type: ignore[assignment]
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{name}: cannot store a complex tensor")
        return to_json_value(value.detach().cpu().tolist(), name)
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{name}: dict keys must be strings, got {k!r} ({type(k).__name__})")
            out[k] = to_json_value(v, f"{name}[{k!r}]")
        return out
    raise TypeError(f"{name}: cannot store a {type(value).__module__}.{type(value).__qualname__} ({value!r:.60}) "
                    "in a result row; store numbers, strings, bools, None, or lists/dicts of them")


def _measured(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in BOOKKEEPING_FIELDS and k != "key"}


def _is_row(text: bytes) -> bool:
    try:
        row = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(row, dict) and isinstance(row.get("key"), dict)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _append_line(path: Path, line: str) -> None:
    """Append one line with one ``write`` (O_APPEND) and fsync it: a crash leaves a prefix at most."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so a crash leaves either the old or the new file (no temp file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(option, old value, new value)`` for each top-level option that differs; a missing option
    shows as ``"(absent)"``."""
    old, new = json.loads(_canonical(dict(old))), json.loads(_canonical(dict(new)))
    diffs = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, _ABSENT), new.get(k, _ABSENT)
        if _canonical(a) != _canonical(b):
            diffs.append((k, a, b))
    return diffs


class ResultStore:
    """Append-only, resumable store of result rows in ``folder``.

    Each row is one JSON line ``{"key": {...}, <values>, "time": ...}`` appended with one write and
    an fsync, so a crash loses at most the row being written. On opening:

    * a last line without its newline (cut by a crash) is moved to ``results.jsonl.torn`` and the
      file truncated to its last complete row, with a :class:`ResultStoreWarning`; that row is
      simply computed again;
    * other unreadable lines are skipped with a warning naming their line numbers;
    * two rows with the same key and different values (other than :data:`BOOKKEEPING_FIELDS`) raise
      :class:`ConflictingRowError` naming both lines; identical duplicates are read once;
    * a ``config.json`` of other options raises :class:`ConfigMismatchError` naming each option
      that differs; a damaged ``config.json`` raises :class:`ResultStoreError` naming it.

    Args:
        folder: output folder (created).
        config: the configuration of the whole run (tensors and NumPy values become numbers, other
            non-JSON objects such as paths their ``str``); written to ``config.json`` together with :func:`environment_info`.
        resume: if False an existing ``results.jsonl`` is moved aside (``results.<time>.jsonl``)
            instead of resumed.
    """

    def __init__(self, folder: str | os.PathLike, config: Mapping[str, Any], resume: bool = True):
        if not isinstance(config, Mapping):
            raise TypeError(f"ResultStore config must be a mapping of options, got {type(config).__name__}")
        if not isinstance(resume, bool):
            raise TypeError(f"ResultStore resume must be True or False, got {resume!r}")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"result folder {self.folder} is a file, not a folder; choose another folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "results.jsonl"
        self.torn_path = self.folder / "results.jsonl.torn"
        self.config = json.loads(_canonical(dict(config)))
        #: ``(line number, text)`` of every line set aside or skipped while opening.
        self.damaged: list[tuple[int, str]] = []
        cfg_path = self.folder / "config.json"
        if self.path.exists():
            if cfg_path.exists():
                old = self._read_config(cfg_path)
                diffs = config_differences(old, self.config) if old is not None else []
                if resume and diffs:
                    listing = "; ".join(f"{k}: {a!r} before, {b!r} now" for k, a, b in diffs)
                    raise ConfigMismatchError(
                        f"{self.folder} holds results of a different configuration ({listing}). Rerun with the "
                        "same options to resume, start over in this folder with --fresh, or write to "
                        "another folder with --out", self.folder, diffs)
            elif resume:
                import warnings

                warnings.warn(f"{self.path} has no config.json next to it: its rows are resumed as results of "
                              "the current options (nothing checks that they match)", ResultStoreWarning, stacklevel=2)
            if not resume:
                self.path.rename(self._aside_name())
        _write_atomic(cfg_path, json.dumps({"config": self.config, "environment": environment_info()},
                                           indent=2, default=str))
        self._rows: list[dict[str, Any]] = []
        self._by_key: dict[str, tuple[int, dict[str, Any]]] = {}  # key -> (line number, row)
        self._n_lines = 0
        if self.path.exists():
            self._load()

    def _aside_name(self) -> Path:
        stamp = int(time.time())
        for i in range(1000):
            p = self.folder / (f"results.{stamp}.jsonl" if i == 0 else f"results.{stamp}-{i}.jsonl")
            if not p.exists():
                return p
        raise ResultStoreError(f"cannot find a free name to move {self.path} aside", self.path)

    def _read_config(self, cfg_path: Path) -> Any:
        try:
            old = json.loads(cfg_path.read_text())
            if not isinstance(old, dict) or not isinstance(old.get("config"), dict):
                raise ValueError("not a JSON object with a 'config' entry")
            return old["config"]
        except (ValueError, UnicodeDecodeError) as e:
            reason = str(e).splitlines()[0][:120]
            raise ResultStoreError(
                f"{cfg_path} is damaged or not a spikenoise config file ({reason}). The rows in {self.path} "
                f"are not affected: move {cfg_path} aside (or delete it) and rerun with the options that produced "
                "them to resume, or write to another folder with --out", cfg_path) from None

    def _load(self) -> None:
        import warnings

        data = self.path.read_bytes()
        if data and not data.endswith(b"\n") and _is_row(data[data.rfind(b"\n") + 1:]):
            _append_line(self.path, "\n")  # a complete row that only lacks its newline: keep it
            data += b"\n"
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            fragment = data[cut:]
            line_no = data.count(b"\n") + 1
            # keep the fragment for inspection, then end the file at its last complete row
            with open(self.torn_path, "ab") as fh:
                fh.write(fragment + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
                fh.flush()
                os.fsync(fh.fileno())
            text = fragment.decode(errors="replace")
            self.damaged.append((line_no, text))
            warnings.warn(f"{self.path}: line {line_no} was cut short (a crash while writing it) and is moved to "
                          f"{self.torn_path}; that row will be computed again", ResultStoreWarning, stacklevel=3)
            data = data[:cut]
        skipped = []
        for line_no, raw in enumerate(data.decode(errors="replace").split("\n"), start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("key"), dict):
                skipped.append(line_no)  # JSON only, so nothing was run; the condition is redone
                self.damaged.append((line_no, line))
                continue
            k = _canonical(row["key"])
            if k in self._by_key:
                first_no, first = self._by_key[k]
                if _canonical(_measured(first)) != _canonical(_measured(row)):
                    raise ConflictingRowError(
                        f"{self.path}: lines {first_no} and {line_no} hold different results for the same key "
                        f"{row['key']}: {_measured(first)} vs {_measured(row)}. Delete the wrong line (the other "
                        "rows are kept), or delete both to compute that row again", self.path, row["key"],
                        _measured(first), _measured(row))
                continue  # an identical duplicate
            self._by_key[k] = (line_no, row)
            self._rows.append(row)
        self._n_lines = data.count(b"\n")
        if skipped:
            shown = ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else "")
            warnings.warn(f"{self.path}: skipped {len(skipped)} line(s) that are not result rows (line {shown}); "
                          "their conditions are computed again", ResultStoreWarning, stacklevel=3)

    def done(self, key: Mapping[str, Any]) -> bool:
        """True if a row with this key is already stored."""
        return self._key_id(key) in self._by_key

    @staticmethod
    def _key_id(key: Mapping[str, Any]) -> str:
        if not isinstance(key, Mapping):
            raise TypeError(f"result key must be a dict of fields, got {type(key).__name__}: {key!r:.60}")
        return _canonical(to_json_value(dict(key), "key"))

    def add(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Append one row and flush it to disk at once.

        ``values`` are converted by :func:`to_json_value` (tensors and NumPy values become numbers).
        Adding a key that is already stored is a no-op if the values are the same (apart from
        :data:`BOOKKEEPING_FIELDS`) and a :class:`ConflictingRowError` otherwise.
        """
        kid = self._key_id(key)
        if not isinstance(values, Mapping):
            raise TypeError(f"result values must be a dict of columns, got {type(values).__name__}: {values!r:.60}")
        reserved = {"key", "time"} & set(values)
        if reserved:
            raise ValueError(f"result values may not use the reserved column name(s) {sorted(reserved)}")
        row: dict[str, Any] = {"key": to_json_value(dict(key), "key")}
        for col, v in values.items():
            if not isinstance(col, str):
                raise TypeError(f"result column names must be strings, got {col!r}")
            row[col] = to_json_value(v, f"column {col!r}")
        row["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if kid in self._by_key:
            line_no, old = self._by_key[kid]
            if _canonical(_measured(old)) == _canonical(_measured(row)):
                return
            raise ConflictingRowError(
                f"{self.path}: a row for key {row['key']} is already stored (line {line_no}) with other values: "
                f"{_measured(old)} stored vs {_measured(row)} new; nothing was written",
                self.path, row["key"], _measured(old), _measured(row))
        line = json.dumps(row, sort_keys=True)
        _append_line(self.path, line + "\n")
        self._n_lines += 1
        self._rows.append(row)
        self._by_key[kid] = (self._n_lines, row)

    def rows(self) -> list[dict[str, Any]]:
        """All stored rows, oldest first (each key once)."""
        return list(self._rows)

    def write_csv(self, name: str = "results.csv") -> Path:
        """Flatten the rows (key fields first) into a CSV next to the JSONL file."""
        import csv

        rows = [{**r["key"], **{k: v for k, v in r.items() if k != "key"}} for r in self._rows]
        cols: list[str] = []
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        out = self.folder / name
        with open(out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            for r in rows:
                w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
        return out
