"""What every study shares: command-line options, presets, output folder, errors, progress, plots.

A study is a module with ``add_arguments(parser)`` and ``main(args) -> int`` registered in
``spikenoise.cli.COMMANDS``. It builds its options from :func:`add_common_options` (and
:func:`add_data_options`), resolves them with :func:`resolve_preset`, opens its output folder
with :func:`open_store` and reports bad input by raising :class:`StudyError`; the command line
(:func:`run_command`) prints that as one line and exits with its code (2: usage, 1: environment).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["StudyError", "USAGE", "ENVIRONMENT", "add_common_options", "add_data_options", "resolve_preset",
           "set_threads", "output_folder", "open_store", "run_command", "progress_bar", "pyplot", "save_figure", "finish_panels", "write_csv",
           "fsdd_root", "fmt_seconds", "write_headline", "paired_points_line"]

#: exit codes of :class:`StudyError`
USAGE, ENVIRONMENT = 2, 1


class StudyError(Exception):
    """An error the user can fix, printed as one line: ``exit_code`` 2 for bad options, 1 for the
    environment (missing data, missing package, unwritable folder)."""

    def __init__(self, message: str, exit_code: int = USAGE):
        super().__init__(message)
        self.exit_code = exit_code


def add_common_options(p: argparse.ArgumentParser, study: str, presets: Mapping[str, Any], default_preset: str, *,
                       visible: Sequence[str] | None = None, preset_help: str = "", device: bool = False) -> None:
    """``--preset --out --seed --threads --fresh --no-progress`` (and ``--device`` if asked).

    ``--out`` defaults to ``runs/<study>`` (relative to the working directory); ``visible`` limits
    the presets listed in ``--help`` (the others still work, e.g. test presets).
    """
    shown = list(visible or presets)
    p.add_argument("--preset", default=default_preset, choices=list(presets), metavar="{" + ",".join(shown) + "}",
                   help=preset_help or f"defaults of the run (default {default_preset})")
    p.add_argument("--out", default=f"runs/{study}", help=f"output folder, resumable (default: runs/{study})")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming the results in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    if device:
        p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def add_data_options(p, choices: Sequence[str], *, metavar: str | None = None, root_help: str | None = None):
    """``--data`` (one of ``choices``) and ``--root`` (a data folder; FSDD also from ``$SPIKENOISE_FSDD``)."""
    from spikenoise.data.tensors import FSDD_ENV

    p.add_argument("--data", choices=list(choices), metavar=metavar, help="data set (default: the preset's)")
    p.add_argument("--root", default=None, help=root_help or f"data folder of --data fsdd (default: ${FSDD_ENV})")


def resolve_preset(presets: Mapping[str, Mapping[str, Any]], args: argparse.Namespace, keys: Iterable[str] = (),
                   fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``fallback``, then the preset's values, then every option in ``keys`` (or of the preset) that is set."""
    if args.preset not in presets:
        raise StudyError(f"unknown preset {args.preset!r}; choose one of {list(presets)}")
    cfg = {**(fallback or {}), **presets[args.preset]}
    for k in list(dict.fromkeys([*cfg, *keys])):
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    cfg["preset"] = args.preset
    return cfg


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is given (0 or None: leave torch's choice)."""
    if n is not None and n < 0:
        raise StudyError(f"--threads must be >= 1, got {n}")
    if n:
        import torch

        torch.set_num_threads(n)


def output_folder(out: str | Path) -> Path:
    """``out`` created as a folder, or a one-line :class:`StudyError` (exit 1) saying why it cannot be:
    a file in the way, a folder that is not writable, or the OS's reason."""
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == out else f"cannot be created: {str(existing)!r} is a file"
        raise StudyError(f"--out {str(out)!r} {what}; pass a folder", ENVIRONMENT)
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise StudyError(f"--out {str(out)!r}: the folder {str(existing)!r} is not writable; pass another --out",
                         ENVIRONMENT)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudyError(f"cannot create the output folder {str(out)!r}: {e.strerror}", ENVIRONMENT) from None
    return out


def open_store(out: str | Path, config: Mapping[str, Any], fresh: bool = False):
    """The output folder (created) and its :class:`~spikenoise.results.ResultStore` for ``config``.

    Resumes the rows on disk; ``fresh`` moves them aside. A folder written with other options is
    a :class:`StudyError` that names ``--fresh``.
    """
    from spikenoise.results import ResultStore

    out = output_folder(out)
    try:
        return ResultStore(out, dict(config), resume=not fresh)
    except ValueError as e:
        raise StudyError(f"{e}; or pass --fresh") from None


def fsdd_root(root: str | None) -> str:
    """The FSDD folder from ``--root`` or ``$SPIKENOISE_FSDD`` (a usage error when neither names one)."""
    from spikenoise.data.tensors import fsdd_root as find

    try:
        root = find(root)
    except FileNotFoundError as e:
        raise StudyError(str(e)) from None
    if not Path(root).expanduser().is_dir():
        raise StudyError(f"FSDD folder not found: {root!r} (--root or $SPIKENOISE_FSDD)")
    return str(Path(root).expanduser().resolve())


def run_command(name: str, main: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a study's ``main``: a :class:`StudyError` or a missing file / package becomes one line on
    stderr and its exit code; anything else too, unless ``args.debug`` (then the traceback)."""
    try:
        return int(main(args) or 0)
    except StudyError as e:
        code, msg = e.exit_code, str(e)
    except (FileNotFoundError, ImportError) as e:
        if getattr(args, "debug", False):
            raise
        code, msg = ENVIRONMENT, str(e)
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if getattr(args, "debug", False):
            raise
        code, msg = ENVIRONMENT, f"{type(e).__name__}: {e} (--debug shows the traceback)"
    print(f"spikenoise {name}: error: {msg}", file=sys.stderr)
    return code


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", enabled: bool = True):
    """A tqdm progress bar (``enabled=False``: silent)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True)


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Tight layout, save as ``path``, close the figure; returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return Path(path)


def finish_panels(fig, axes, ylabel: str, path: str | Path, legend_fontsize: int = 8, legend_loc: str = "best",
                  title: str | None = None) -> Path:
    """Y label and legend on the first panel of a row of panels, an optional title, then :func:`save_figure`."""
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=legend_fontsize, loc=legend_loc)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], float_format: str | None = None) -> None:
    """Rows (dicts with the same keys, in order) as a CSV file with a header; nothing for no rows."""
    if not rows:
        return
    fmt = (lambda v: format(v, float_format) if isinstance(v, float) else v) if float_format else (lambda v: v)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows({k: fmt(v) for k, v in r.items()} for r in rows)


def fmt_seconds(s: float) -> str:
    """``"12.3 s"`` or ``"4.5 min"``."""
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.1f} s"


def write_headline(out: str | Path, question: str, lines: Sequence[str]) -> str:
    """A study's answer to its headline question: ``headline.txt`` in ``out``; returns the text (to print)."""
    text = "\n".join([f"headline: {question}", *(f"  {line}" for line in lines)])
    Path(out, "headline.txt").write_text(text + "\n")
    return text


def paired_points_line(label: str, what: str, ci, diffs: Sequence[float], no_ci_hint: str) -> str:
    """One headline line for paired differences of accuracies (fractions) given in points:
    ``"<label>: <what> +1.23 points (95% CI ..; per seed ..)"``; ``ci`` as :func:`spikenoise.claims.paired_ci`
    returns it (no interval: the mean and ``no_ci_hint``)."""
    if ci.n < 2 or ci.lo != ci.lo:  # NaN bounds: no spread to estimate
        return f"{label}: {what} {100 * ci.mean:+.2f} points, no CI ({no_ci_hint})"
    per = ", ".join(f"{100 * x:+.2f}" for x in diffs)
    return (f"{label}: {what} {100 * ci.mean:+.2f} points (95% CI {100 * ci.lo:+.2f} .. {100 * ci.hi:+.2f}; "
            f"per seed {per})")

