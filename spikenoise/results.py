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

__all__ = ["ResultStore", "mean_ci", "environment_info"]


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of ``values``.

    Returns ``(mean, 0.0)`` for a single value (no spread can be estimated).
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_ci needs at least one value, got an empty sequence")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n = len(xs)
    m = sum(xs) / n
    if n == 1:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.5 + confidence / 2.0, n - 1)) * math.sqrt(var / n)
    return m, half


def environment_info() -> dict[str, Any]:
    """Package versions and hardware, recorded in every result file."""
    import torch

    from . import __version__

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


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class ResultStore:
    """Append-only, resumable store of result rows in ``folder``.

    Args:
        folder: output folder (created).
        config: the configuration of the whole run (JSON-serialisable); written to
            ``config.json`` together with :func:`environment_info`.
        resume: if False an existing ``results.jsonl`` is moved aside instead of resumed.
    """

    def __init__(self, folder: str | os.PathLike, config: Mapping[str, Any], resume: bool = True):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "results.jsonl"
        self.config = json.loads(_canonical(dict(config)))
        cfg_path = self.folder / "config.json"
        if cfg_path.exists() and self.path.exists():
            try:
                old = json.loads(cfg_path.read_text()).get("config")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
                raise ValueError(f"{cfg_path} is not a spikenoise config file (a JSON object): {e}; "
                                 "fix or remove it, or use another output folder") from None
            if resume and old is not None and _canonical(old) != _canonical(self.config):
                raise ValueError(
                    f"{self.folder} holds results of a different configuration; "
                    "use another output folder or resume=False (the old results are kept aside)"
                )
            if not resume:
                self.path.rename(self.folder / f"results.{int(time.time())}.jsonl")
        cfg_path.write_text(
            json.dumps({"config": self.config, "environment": environment_info()}, indent=2, default=str)
        )
        self._rows: list[dict[str, Any]] = []
        self._done: set[str] = set()
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: the condition is simply redone
                if not isinstance(row, dict) or "key" not in row:
                    continue  # not a result row (JSON only, so nothing was run): redone as well
                self._rows.append(row)
                self._done.add(_canonical(row["key"]))

    def done(self, key: Mapping[str, Any]) -> bool:
        """True if a row with this key is already stored."""
        return _canonical(dict(key)) in self._done

    def add(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Append one row and flush it to disk at once."""
        row = {"key": dict(key), **dict(values), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        row = json.loads(_canonical(row))
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._rows.append(row)
        self._done.add(_canonical(row["key"]))

    def rows(self) -> list[dict[str, Any]]:
        """All stored rows, oldest first."""
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
