"""pytest plugin (entry point ``spikenoise``): grids of noisy-NVM experiments as tests.

Installed with spikenoise and loaded by pytest automatically (disable with ``-p no:spikenoise``).
It turns a test function into a comparison over models, noise levels, error types and seeds, and
prints a table of the recorded numbers (mean and 95% confidence interval over the seeds) at the
end of the run::

    import pytest

    @pytest.mark.spikenoise_grid(models=["cnn", "scnn"], noise_levels=[0, 2], errors=["static", "dynamic"],
                                 seeds=5)
    def test_accuracy(sn_model, sn_noise_level, sn_errors, sn_seed, sn_record):
        acc = evaluate(sn_model, sn_noise_level, sn_errors, seed=sn_seed)
        sn_record("accuracy", acc)

    $ pytest test_compare.py --spikenoise-results results.csv
    ========================= spikenoise results =========================
    test           model  level  errors   metric    n  mean    ±95% CI
    test_accuracy  cnn    0      static   accuracy  5  0.9120  0.0031
    ...

Marker
    ``@pytest.mark.spikenoise_grid(models=..., noise_levels=..., errors=..., seeds=...)``: every
    keyword is optional; each one given becomes an axis of the grid (product of all axes, seed
    innermost). ``models`` is a list (ids from the values) or a dict ``{id: value}`` (e.g. factories);
    ``noise_levels`` and ``errors`` are lists; ``seeds`` is a count ``N`` (seeds ``0..N-1``) or a
    list of seeds. Test ids read ``[model-L<level>-<errors>-s<seed>]``. On a class or module
    (``pytestmark``) it applies to every test inside; the closest marker wins. Other
    ``@pytest.mark.parametrize`` arguments of the test become columns of the table.

Fixtures
    ``sn_model``, ``sn_noise_level``, ``sn_errors``, ``sn_seed``: the grid point (defaults without a
    grid: None, 0, "static", 0). ``sn_seed`` also seeds Python's, NumPy's and torch's global RNGs.
    ``sn_error_model``: ``MultiLevelNVM.noise_level(sn_noise_level)`` (or the level itself if it
    is already an error model). ``sn_record(metric, value, **columns)``: record one number for
    this grid point (extra ``columns`` group the table further). ``sn_results``: the rows recorded so far in this process (for tests that compare grid
    points; under pytest-xdist each worker sees only its own rows).

Options
    ``--spikenoise-results PATH`` write the table (``.json``: JSON with table and raw rows;
    anything else: CSV). ``--spikenoise-seeds N`` run every grid with seeds ``0..N-1`` (also grids
    that had no seeds axis).
    ``--spikenoise-confidence C`` confidence level of the intervals (default 0.95).

Rows are passed through ``item.user_properties``, so the table is complete under pytest-xdist
too. Nothing is printed (and no file written unless asked for) when no test recorded a value.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pytest

__all__ = ["GRID_MARKER", "GRID_AXES", "GridValue", "Recorder", "summarize", "format_table", "write_table"]

#: Name of the grid marker.
GRID_MARKER = "spikenoise_grid"
#: marker keyword -> (fixture name, column name in the table)
GRID_AXES = {
    "models": ("sn_model", "model"),
    "noise_levels": ("sn_noise_level", "noise_level"),
    "errors": ("sn_errors", "errors"),
    "seeds": ("sn_seed", "seed"),
}
_DEFAULTS = {"sn_model": None, "sn_noise_level": 0, "sn_errors": "static", "sn_seed": 0}
_PROPERTY = "spikenoise"  # key of our rows in item.user_properties
_FIXTURES = {fixture for fixture, _ in GRID_AXES.values()}


@dataclass(frozen=True)
class GridValue:
    """One value of a grid axis with the label used in test ids and in the table."""

    label: str
    value: Any
    cell: Any = None  # what the table shows (default: the label)

    def __repr__(self) -> str:  # shown by pytest in --collect-only and failure reports
        return self.label


def _label(value: Any) -> str:
    """Short, id-safe label of an axis value: names of classes/functions, str of the rest."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    name = getattr(value, "__name__", None)
    if isinstance(name, str):
        return name
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _axis_values(kw: str, raw: Any, seeds_override: int | None) -> list[GridValue]:
    """Validate one marker keyword and expand it into labelled values."""
    if kw == "seeds":
        if seeds_override is not None:
            raw = seeds_override
        if isinstance(raw, bool):
            raise TypeError("spikenoise_grid(seeds=...) takes a count or a list of ints, got a bool")
        if isinstance(raw, int):
            if raw < 1:
                raise ValueError(f"spikenoise_grid(seeds=N) needs N >= 1, got {raw}")
            raw = range(raw)
        values = [int(s) for s in raw]
        if not values:
            raise ValueError("spikenoise_grid(seeds=...) is empty")
        dup = sorted({s for s in values if values.count(s) > 1})
        if dup:
            raise ValueError(f"spikenoise_grid(seeds=...) has repeated seeds {dup}")
        return [GridValue(f"s{s}", s, s) for s in values]
    if isinstance(raw, Mapping):
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        raise TypeError(f"spikenoise_grid({kw}=...) takes a list{' or a dict' if kw == 'models' else ''}, "
                        f"got {raw!r}")
    else:
        items = [(_label(v), v) for v in raw]
    if not items:
        raise ValueError(f"spikenoise_grid({kw}=...) is empty")
    labels = [lab for lab, _ in items]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ValueError(f"spikenoise_grid({kw}=...) has repeated labels {dup}; pass a dict {{label: value}}")
    if kw == "noise_levels":
        # ids "L2" (a bare "2" is ambiguous next to seeds); the table keeps numeric levels as numbers
        return [GridValue(f"L{lab}", v, v if isinstance(v, (int, float)) and not isinstance(v, bool) else lab)
                for lab, v in items]
    return [GridValue(lab, v, lab) for lab, v in items]


# ----------------------------------------------------------------------------------------------
# hooks

def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--spikenoise-results``, ``--spikenoise-seeds`` and ``--spikenoise-confidence``."""
    group = parser.getgroup("spikenoise", "spikenoise comparison grids")
    group.addoption("--spikenoise-results", metavar="PATH", default=None,
                    help="write the spikenoise results table to PATH (.json: JSON, otherwise CSV)")
    group.addoption("--spikenoise-seeds", metavar="N", type=int, default=None,
                    help="override the seeds of every spikenoise_grid with 0..N-1")
    group.addoption("--spikenoise-confidence", metavar="C", type=float, default=0.95,
                    help="confidence level of the intervals in the spikenoise table (default 0.95)")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker (so ``--strict-markers`` accepts it), check options, start the recorder."""
    config.addinivalue_line(
        "markers",
        f"{GRID_MARKER}(models=None, noise_levels=None, errors=None, seeds=None): run the test over the "
        "product of these axes (fixtures sn_model, sn_noise_level, sn_errors, sn_seed); record numbers "
        "with the sn_record fixture",
    )
    seeds = config.getoption("--spikenoise-seeds", None)
    if seeds is not None and seeds < 1:
        raise pytest.UsageError(f"--spikenoise-seeds needs N >= 1, got {seeds}")
    conf = config.getoption("--spikenoise-confidence", 0.95)
    if not 0.0 < conf < 1.0:
        raise pytest.UsageError(f"--spikenoise-confidence must be in (0, 1), got {conf}")
    if not config.pluginmanager.has_plugin("spikenoise-recorder"):
        config.pluginmanager.register(Recorder(config), "spikenoise-recorder")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a test carrying the grid marker over the product of its axes.

    The closest marker wins (function over class over module ``pytestmark``); axes are not merged.
    """
    mark = metafunc.definition.get_closest_marker(GRID_MARKER)
    if mark is None:
        return
    if mark.args:
        raise TypeError(f"{GRID_MARKER} takes keyword arguments only ({', '.join(GRID_AXES)}), got {mark.args!r}")
    unknown = set(mark.kwargs) - set(GRID_AXES)
    if unknown:
        raise TypeError(f"{GRID_MARKER} got unknown keyword(s) {sorted(unknown)}; known: {list(GRID_AXES)}")
    seeds_override = metafunc.config.getoption("--spikenoise-seeds", None)
    kwargs = dict(mark.kwargs)
    if seeds_override is not None:
        kwargs.setdefault("seeds", seeds_override)
    for kw in GRID_AXES:  # fixed axis order: model, level, errors, seed (innermost)
        if kw not in kwargs:
            continue
        fixture = GRID_AXES[kw][0]
        values = _axis_values(kw, kwargs[kw], seeds_override)
        # A test may leave an axis out of its signature (e.g. repeat over seeds without using the
        # seed); the axis must still be a fixture of the test so that it is parametrized and known
        # to sn_record (the same trick pytest-repeat uses).
        if fixture not in metafunc.fixturenames:
            metafunc.fixturenames.append(fixture)
        metafunc.parametrize(fixture, values, indirect=True, ids=[v.label for v in values])


def _grid_param(request: pytest.FixtureRequest, fixture: str) -> GridValue | None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is None:
        return None
    p = callspec.params.get(fixture)
    return p if isinstance(p, GridValue) else None


def _fixture_value(request: pytest.FixtureRequest, fixture: str) -> Any:
    p = getattr(request, "param", None)
    if isinstance(p, GridValue):
        return p.value
    return _DEFAULTS[fixture]


@pytest.fixture
def sn_model(request: pytest.FixtureRequest) -> Any:
    """The model of this grid point (``models=`` of the ``spikenoise_grid`` marker; None without)."""
    return _fixture_value(request, "sn_model")


@pytest.fixture
def sn_noise_level(request: pytest.FixtureRequest) -> Any:
    """The noise level of this grid point (``noise_levels=``; 0 without a grid)."""
    return _fixture_value(request, "sn_noise_level")


@pytest.fixture
def sn_errors(request: pytest.FixtureRequest) -> Any:
    """The error type of this grid point (``errors=``, e.g. "static" / "dynamic"; "static" without)."""
    return _fixture_value(request, "sn_errors")


@pytest.fixture
def sn_seed(request: pytest.FixtureRequest) -> int:
    """The seed of this repetition (``seeds=``; 0 without a grid).

    Python's, NumPy's and torch's global RNGs are seeded with it before the test runs, so every
    repetition is reproducible on its own (``pytest -k s3`` reruns seed 3 only).
    """
    seed = int(_fixture_value(request, "sn_seed"))
    from .train import seed_everything  # lazy: keep `pytest --help` and unrelated runs light

    seed_everything(seed)
    return seed


@pytest.fixture
def sn_error_model(sn_noise_level: Any) -> Any:
    """``MultiLevelNVM.noise_level(sn_noise_level)``; an error model given as level is passed through."""
    from .noise.base import ErrorModel
    from .noise.nvm import MultiLevelNVM

    if isinstance(sn_noise_level, ErrorModel):
        return sn_noise_level
    return MultiLevelNVM.noise_level(int(sn_noise_level))


def _grid_point(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Table columns of the current test: test name, grid axes, other parametrize arguments."""
    node = request.node
    point: dict[str, Any] = {"test": node.nodeid.split("[", 1)[0]}
    for fixture, column in GRID_AXES.values():
        gv = _grid_param(request, fixture)
        if gv is not None:
            point[column] = gv.cell
        elif fixture in request.fixturenames:  # requested without a grid: the fixture's default
            default = _DEFAULTS[fixture]
            point[column] = default if column == "seed" else (None if default is None else _label(default))
        else:
            point[column] = None
    callspec = getattr(node, "callspec", None)
    extra: dict[str, str] = {}
    if callspec is not None:
        # other parametrize arguments (e.g. @pytest.mark.parametrize("reads", ...)) are grouping columns
        for name, value in callspec.params.items():
            if name not in _FIXTURES:
                extra[name] = _label(value)
    point["params"] = extra
    return point


@pytest.fixture
def sn_record(request: pytest.FixtureRequest):
    """``sn_record(metric, value, **columns)``: record one number for the current grid point.

    ``metric`` names the quantity ("accuracy", "rel_error", ...); ``value`` must be a real number.
    Extra keyword ``columns`` become grouping columns of the table (like the grid axes). Values of
    the same group recorded under different seeds (or several times) are summarized by their mean
    and confidence interval.
    """
    point = _grid_point(request)

    def record(metric: str, value: float, **columns: Any) -> None:
        """Record ``value`` of ``metric`` for this grid point (see :func:`sn_record`)."""
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"sn_record: metric must be a non-empty string, got {metric!r}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"sn_record({metric!r}, ...): value must be a real number, got {value!r}") from None
        if math.isnan(v):
            raise ValueError(f"sn_record({metric!r}, ...): value is NaN")
        params = dict(point["params"])
        params.update({str(k): _label(c) for k, c in columns.items()})
        row = {**point, "params": params, "metric": metric, "value": v}
        # through user_properties, so that pytest-xdist ships the rows to the controller
        request.node.user_properties.append((_PROPERTY, row))

    return record


@pytest.fixture(scope="session")
def sn_results(pytestconfig: pytest.Config) -> "Recorder":
    """The :class:`Recorder` of this run: ``.rows(**filters)`` and ``.summary(**filters)`` of the
    values recorded so far (in this process)."""
    return pytestconfig.pluginmanager.get_plugin("spikenoise-recorder")


# ----------------------------------------------------------------------------------------------
# collection of rows and the table

class Recorder:
    """Collects the rows recorded by ``sn_record`` and prints / writes the summary table."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self._rows: list[dict[str, Any]] = []

    # rows arrive with every test's teardown report (which carries all user_properties of the test,
    # whatever the outcome); under xdist the controller sees the workers' reports here too
    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the rows a test recorded (from its teardown report)."""
        if report.when != "teardown":
            return
        for key, row in report.user_properties:
            if key == _PROPERTY and isinstance(row, dict):
                self._rows.append(dict(row))

    def rows(self, **filters: Any) -> list[dict[str, Any]]:
        """Recorded rows (dicts: test, model, noise_level, errors, seed, params, metric, value)
        whose fields equal ``filters`` (a ``test`` filter matches the end of the test id)."""
        out = []
        for r in self._rows:
            ok = True
            for k, v in filters.items():
                have = r.get(k, r["params"].get(k))
                if k == "test":
                    ok = ok and isinstance(have, str) and (have == v or have.endswith("::" + str(v)))
                else:
                    ok = ok and have == v
            if ok:
                out.append(r)
        return out

    def summary(self, **filters: Any) -> list[dict[str, Any]]:
        """:func:`summarize` of :meth:`rows` at the run's confidence level."""
        return summarize(self.rows(**filters), self.config.getoption("--spikenoise-confidence", 0.95))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        """Print the table (if anything was recorded) and write ``--spikenoise-results``."""
        if hasattr(config, "workerinput"):  # an xdist worker: the controller reports
            return
        path = config.getoption("--spikenoise-results", None)
        conf = config.getoption("--spikenoise-confidence", 0.95)
        table = summarize(self._rows, conf)
        if table:
            terminalreporter.write_sep("=", "spikenoise results")
            for line in format_table(table, conf).splitlines():
                terminalreporter.write_line(line)
        if path:
            out = write_table(table, path, rows=self._rows, confidence=conf)
            if table:
                terminalreporter.write_line(f"spikenoise: table written to {out}")


def _group_key(row: Mapping[str, Any]) -> tuple:
    return (row["test"], row.get("model"), row.get("noise_level"), row.get("errors"),
            tuple(sorted(row.get("params", {}).items())), row["metric"])


def summarize(rows: Iterable[Mapping[str, Any]], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Group rows by everything except the seed; mean and CI half-width per group.

    Returns dicts ``test, model, noise_level, errors, params, metric, n, mean, ci, values`` in the
    order the groups first appeared. ``ci`` is the Student-t half-width from
    :func:`spikenoise.mean_ci` (0 for a single value).
    """
    from .results import mean_ci

    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = _group_key(r)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"test": r["test"], "model": r.get("model"), "noise_level": r.get("noise_level"),
                               "errors": r.get("errors"), "params": dict(r.get("params", {})),
                               "metric": r["metric"], "values": [], "seeds": []}
        g["values"].append(float(r["value"]))
        g["seeds"].append(r.get("seed"))
    out = []
    for g in groups.values():
        m, ci = mean_ci(g["values"], confidence)
        out.append({**g, "n": len(g["values"]), "mean": m, "ci": ci})
    return out


def _columns(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """Key columns that are set in at least one group (grid axes, then extra parameters)."""
    cols = ["test"]
    for col in ("model", "noise_level", "errors"):
        if any(g.get(col) is not None for g in table):
            cols.append(col)
    for g in table:
        for k in g.get("params", {}):
            if k not in cols:
                cols.append(k)
    return cols


def _cell(g: Mapping[str, Any], col: str) -> str:
    v = g.get(col) if col in ("test", "model", "noise_level", "errors") else g.get("params", {}).get(col)
    if v is None:
        return "-"
    return str(v).split("::")[-1] if col == "test" else str(v)


def _num(x: float) -> str:
    return f"{x:.3e}" if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3) else f"{x:.4f}"


def format_table(table: Sequence[Mapping[str, Any]], confidence: float = 0.95) -> str:
    """Fixed-width text table of :func:`summarize` output."""
    cols = _columns(table)
    head = [("level" if c == "noise_level" else c) for c in cols] + [
        "metric", "n", "mean", f"±{round(confidence * 100, 1):g}% CI"]
    body = [[_cell(g, c) for c in cols] + [g["metric"], str(g["n"]), _num(g["mean"]), _num(g["ci"])]
            for g in table]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    n_key = len(cols) + 1
    lines = []
    for r in [head] + body:
        cells = [r[i].ljust(widths[i]) if i < n_key else r[i].rjust(widths[i]) for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def write_table(table: Sequence[Mapping[str, Any]], path: str | Path, *, rows: Sequence[Mapping[str, Any]] = (),
                confidence: float = 0.95) -> Path:
    """Write the table to ``path``: ``.json`` -> ``{"confidence", "table", "rows"}``; else CSV
    (one line per group: key columns, metric, n, mean, ci, confidence, values as a JSON list)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"confidence": confidence, "table": list(table), "rows": list(rows)},
                                   indent=2, default=str))
        return path
    cols = _columns(table)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols + ["metric", "n", "mean", "ci", "confidence", "values"])
        for g in table:
            key = [("" if _cell(g, c) == "-" else (g["test"] if c == "test" else _cell(g, c))) for c in cols]
            w.writerow(key + [g["metric"], g["n"], repr(g["mean"]), repr(g["ci"]), confidence,
                              json.dumps(g["values"])])
    return path
