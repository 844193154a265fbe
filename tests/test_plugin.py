"""The pytest plugin (spikenoise.pytest_plugin): grid parametrization, recording, table, files.

Every test runs an inner pytest session with ``pytester`` (in-process, fast) on a small generated
test file and checks what the plugin did there.
"""
from __future__ import annotations

import csv
import json
import math
import os

import pytest

from spikenoise import mean_ci
from spikenoise.pytest_plugin import format_table, summarize

pytest_plugins = ["pytester"]

# The plugin reaches the inner session through its pytest11 entry point; where plugin autoloading
# is switched off it has to be named explicitly (naming it twice would register it twice).
PLUGIN_ARGS = ["-p", "spikenoise.pytest_plugin"] if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else []


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-p", "no:randomly", *args)


GRID = """
import pytest

@pytest.mark.spikenoise_grid(models=["cnn", "snn"], noise_levels=[0, 3], errors=["static", "dynamic"], seeds=3)
def test_grid(sn_model, sn_noise_level, sn_errors, sn_seed, sn_record):
    # known values: mean over seeds 0, 1, 2 is base + 1, the spread is that of (0, 1, 2)
    base = {"cnn": 10.0, "snn": 20.0}[sn_model] + 100.0 * sn_noise_level + (0.5 if sn_errors == "dynamic" else 0.0)
    sn_record("accuracy", base + sn_seed)
"""


def test_grid_parametrizes_ids_and_counts(pytester):
    pytester.makepyfile(test_grid=GRID)
    result = run(pytester, "--collect-only", "-q")
    result.assert_outcomes()
    ids = [ln.strip() for ln in result.outlines if ln.startswith("test_grid.py::")]
    assert len(ids) == 2 * 2 * 2 * 3
    # axis order model, level, errors, seed (innermost)
    assert ids[:4] == ["test_grid.py::test_grid[cnn-L0-static-s0]", "test_grid.py::test_grid[cnn-L0-static-s1]",
                       "test_grid.py::test_grid[cnn-L0-static-s2]", "test_grid.py::test_grid[cnn-L0-dynamic-s0]"]
    assert ids[-1] == "test_grid.py::test_grid[snn-L3-dynamic-s2]"


def test_summary_table_mean_and_ci(pytester):
    pytester.makepyfile(test_grid=GRID)
    result = run(pytester)
    result.assert_outcomes(passed=24)
    out = result.stdout.str()
    assert "spikenoise results" in out
    half = mean_ci([0.0, 1.0, 2.0])[1]
    assert math.isclose(half, 4.302652729911275 / math.sqrt(3), rel_tol=1e-9)
    lines = [ln.split() for ln in result.outlines if ln.startswith("test_grid ")]
    assert len(lines) == 8
    # test model level errors metric n mean ci
    table = {(ln[1], ln[2], ln[3]): (int(ln[5]), float(ln[6]), float(ln[7])) for ln in lines}
    assert table["cnn", "0", "static"] == (3, 11.0, round(half, 4))
    assert table["snn", "3", "dynamic"] == (3, 321.5, round(half, 4))
    head = next(ln for ln in result.outlines if ln.startswith("test "))
    assert head.split() == ["test", "model", "level", "errors", "metric", "n", "mean", "±95%", "CI"]


def test_csv_output(pytester):
    pytester.makepyfile(test_grid=GRID)
    path = pytester.path / "out" / "table.csv"
    result = run(pytester, f"--spikenoise-results={path}")
    result.assert_outcomes(passed=24)
    assert f"table written to {path}" in result.stdout.str()
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert list(rows[0]) == ["test", "model", "noise_level", "errors", "metric", "n", "mean", "ci", "confidence",
                             "values"]
    r = next(r for r in rows if (r["model"], r["noise_level"], r["errors"]) == ("snn", "0", "static"))
    assert r["test"] == "test_grid.py::test_grid"
    assert r["metric"] == "accuracy" and int(r["n"]) == 3
    assert float(r["mean"]) == 21.0
    assert math.isclose(float(r["ci"]), mean_ci([20.0, 21.0, 22.0])[1], rel_tol=1e-12)
    assert float(r["confidence"]) == 0.95
    assert json.loads(r["values"]) == [20.0, 21.0, 22.0]


def test_json_output_confidence_and_seed_override(pytester):
    pytester.makepyfile(test_grid=GRID)
    path = pytester.path / "table.json"
    result = run(pytester, f"--spikenoise-results={path}", "--spikenoise-seeds=5", "--spikenoise-confidence=0.9")
    result.assert_outcomes(passed=2 * 2 * 2 * 5)
    data = json.loads(path.read_text())
    assert data["confidence"] == 0.9
    assert len(data["table"]) == 8 and len(data["rows"]) == 40
    g = next(g for g in data["table"] if (g["model"], g["noise_level"], g["errors"]) == ("cnn", 3, "static"))
    assert g["values"] == [310.0, 311.0, 312.0, 313.0, 314.0] and g["seeds"] == [0, 1, 2, 3, 4]
    m, ci = mean_ci(g["values"], 0.9)
    assert g["mean"] == m and math.isclose(g["ci"], ci)
    assert "±90% CI" in result.stdout.str()


def test_no_output_without_records(pytester):
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert "spikenoise results" not in result.stdout.str()
    assert "table written" not in result.stdout.str()


def test_axes_optional_extra_columns_and_dict_models(pytester):
    pytester.makepyfile(test_more="""
        import pytest

        def small(): return "small-net"
        def large(): return "large-net"

        @pytest.mark.spikenoise_grid(models={"small": small, "large": large}, seeds=[7, 8])
        @pytest.mark.parametrize("reads", ["spike", "step"])
        def test_models(sn_model, sn_record, reads):
            assert sn_model() in ("small-net", "large-net")
            sn_record("x", 1.0, layer="fc1")

        @pytest.mark.spikenoise_grid(noise_levels=[2], seeds=2)
        def test_level_only(sn_error_model, sn_record, sn_seed):
            assert round(float(sn_error_model.confusion[3, 3]), 2) == 0.5
            sn_record("p0", float(sn_error_model.confusion[3, 3]))

        def test_no_grid(sn_record, sn_noise_level, sn_errors, sn_seed):
            assert (sn_noise_level, sn_errors, sn_seed) == (0, "static", 0)
            sn_record("y", 2.0)
            sn_record("y", 4.0)
        """)
    result = run(pytester, "-v")
    result.assert_outcomes(passed=2 * 2 * 2 + 2 + 1)
    out = result.stdout.str()
    assert "test_models[small-s7-spike]" in out or "test_models[spike-small-s7]" in out
    lines = [ln.split() for ln in result.outlines if ln.startswith("test_")]
    models = [ln for ln in lines if ln[0] == "test_models"]
    # columns: test model level errors reads layer metric n mean ci
    assert len(models) == 4 and {ln[1] for ln in models} == {"small", "large"}
    assert all(ln[5] == "fc1" and ln[7] == "2" for ln in models)
    level = next(ln for ln in lines if ln[0] == "test_level_only")
    assert level[2] == "2" and float(level[8]) == 0.5
    no_grid = next(ln for ln in lines if ln[0] == "test_no_grid")
    assert no_grid[7] == "2" and float(no_grid[8]) == 3.0


def test_seed_fixture_seeds_global_rngs(pytester):
    pytester.makepyfile(test_seed="""
        import pytest, random
        import numpy as np
        import torch

        @pytest.mark.spikenoise_grid(seeds=[3, 3])
        def test_draw(sn_seed, sn_record):
            sn_record("draw", float(torch.rand(1)) + random.random() + float(np.random.rand()))
        """)
    result = run(pytester, f"--spikenoise-results={pytester.path / 'r.json'}")
    # repeating a seed is refused (it would only duplicate the same numbers)
    result.assert_outcomes(errors=1)
    assert "repeated seeds [3]" in result.stdout.str()
    pytester.makepyfile(test_seed="""
        import pytest, random
        import numpy as np
        import torch

        @pytest.mark.spikenoise_grid(models=["a", "b"], seeds=[3])
        def test_draw(sn_seed, sn_record):
            sn_record("draw", float(torch.rand(1)) + random.random() + float(np.random.rand()))
        """)
    result = run(pytester, f"--spikenoise-results={pytester.path / 'r.json'}")
    result.assert_outcomes(passed=2)
    rows = json.loads((pytester.path / "r.json").read_text())["rows"]
    assert len(rows) == 2 and rows[0]["value"] == rows[1]["value"]  # same seed -> same draws


def test_module_marker_and_closest_marker_wins(pytester):
    pytester.makepyfile(test_mod="""
        import pytest

        pytestmark = pytest.mark.spikenoise_grid(noise_levels=[1, 2], seeds=2)

        def test_module_grid(sn_noise_level, sn_seed):
            pass

        @pytest.mark.spikenoise_grid(errors=["dynamic"])
        def test_own_grid(sn_errors, sn_noise_level):
            assert (sn_errors, sn_noise_level) == ("dynamic", 0)
        """)
    result = run(pytester, "--collect-only", "-q")
    ids = [ln.strip() for ln in result.outlines if ln.startswith("test_mod.py::")]
    assert ids == ["test_mod.py::test_module_grid[L1-s0]", "test_mod.py::test_module_grid[L1-s1]",
                   "test_mod.py::test_module_grid[L2-s0]", "test_mod.py::test_module_grid[L2-s1]",
                   "test_mod.py::test_own_grid[dynamic]"]
    run(pytester).assert_outcomes(passed=5)


def test_bad_marker_is_a_collection_error(pytester):
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.spikenoise_grid(model=["a"])
        def test_x(sn_record):
            pass
        """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    assert "unknown keyword" in result.stdout.str()


def test_bad_options_are_usage_errors(pytester):
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    result = run(pytester, "--spikenoise-seeds=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--spikenoise-seeds needs N >= 1" in result.stderr.str()
    result = run(pytester, "--spikenoise-confidence=1.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_record_rejects_non_numbers(pytester):
    pytester.makepyfile(test_rec="""
        import pytest

        def test_text(sn_record):
            with pytest.raises(TypeError):
                sn_record("acc", "high")
            with pytest.raises(ValueError):
                sn_record("acc", float("nan"))
        """)
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert "spikenoise results" not in result.stdout.str()


def test_results_fixture_compares_grid_points(pytester):
    pytester.makepyfile(test_cmp="""
        import pytest

        @pytest.mark.spikenoise_grid(errors=["static", "dynamic"], seeds=4)
        def test_point(sn_errors, sn_seed, sn_record):
            sn_record("err", (2.0 if sn_errors == "static" else 1.0) + 0.1 * sn_seed)

        def test_compare(sn_results):
            s = {g["errors"]: g["mean"] for g in sn_results.summary(test="test_point")}
            assert s == pytest.approx({"static": 2.15, "dynamic": 1.15})
            assert len(sn_results.rows(errors="static")) == 4
        """)
    run(pytester).assert_outcomes(passed=9)


def test_summarize_and_format_without_pytest():
    rows = [{"test": "t.py::f", "model": "m", "noise_level": 1, "errors": "static", "seed": s, "params": {},
             "metric": "acc", "value": v} for s, v in enumerate([0.5, 0.7])]
    table = summarize(rows)
    assert len(table) == 1 and table[0]["n"] == 2 and table[0]["mean"] == pytest.approx(0.6)
    assert table[0]["ci"] == pytest.approx(mean_ci([0.5, 0.7])[1])
    text = format_table(table)
    assert text.splitlines()[1].split()[:4] == ["f", "m", "1", "static"]
