"""``--backend ray`` on a local 2-CPU Ray instance: same rows as serial, faults retried and named, resume."""
from __future__ import annotations

import json
import os

import pytest

ray = pytest.importorskip("ray")

from spikenoise import cli  # noqa: E402

# timing columns differ between runs; everything else must be identical
TIMING = ("seconds", "time")


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


def _rows(folder):
    rows = {}
    for line in (folder / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[json.dumps(r.pop("key"), sort_keys=True)] = {k: v for k, v in r.items() if k not in TIMING}
    return rows


def _cli(capsys, *argv):
    rc = cli.main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


COMPARE = ("compare", "--preset", "smoke", "--no-progress", "--threads", "1")


def test_compare_on_ray_faults_resume_and_same_rows_as_serial(local_ray, tmp_path, capsys, monkeypatch):
    serial, par = tmp_path / "serial", tmp_path / "ray"
    rc, out_s, err = _cli(capsys, *COMPARE, "--out", str(serial))
    assert rc == 0, err

    # a training that always fails: retried, then named; its sweep cells are not run, the rest is kept
    monkeypatch.setenv("SPIKENOISE_FAIL_TASK", "train scnn aware2 s0")
    monkeypatch.setenv("SPIKENOISE_FAIL_DIR", str(tmp_path))
    rc, _, err = _cli(capsys, *COMPARE, "--out", str(par), "--backend", "ray", "--max-retries", "2")
    assert rc == 1
    assert err.startswith("spikenoise compare: error: 1 of ") and len(err.strip().splitlines()) == 1
    assert "'train scnn aware2 s0' (InjectedFault: injected fault" in err and "2 task(s) that need them not run" in err
    assert (tmp_path / "spikenoise-fault-train_scnn_aware2_s0.count").read_text() == "3"  # 1 + 2 retries
    partial = _rows(par)
    assert len(partial) == 16 - 4 and not any('"scnn"' in k and '"aware"' in k for k in partial)
    ckpts = {p.name: p.stat().st_mtime_ns for p in (par / "checkpoints").iterdir()}
    assert sorted(ckpts) == ["cnn_agnostic_s0.pt", "cnn_aware2_s0.pt", "scnn_agnostic_s0.pt"]

    # rerun: resumes (finished checkpoints are not retrained); a sweep cell's worker is killed once
    # and retried
    monkeypatch.setenv("SPIKENOISE_FAIL_TASK", "sweep scnn aware2 s0 level 2")
    monkeypatch.setenv("SPIKENOISE_FAIL_TIMES", "1")
    monkeypatch.setenv("SPIKENOISE_FAIL_MODE", "exit")
    rc, out_r, err = _cli(capsys, *COMPARE, "--out", str(par), "--backend", "ray")
    assert rc == 0, err
    assert (tmp_path / "spikenoise-fault-sweep_scnn_aware2_s0_level_2.count").read_text() == "1"
    assert {p: (par / "checkpoints" / p).stat().st_mtime_ns for p in ckpts} == ckpts
    assert _rows(par) == _rows(serial)  # same seeds, same rows, whatever ran where and when
    assert out_r.split("accuracy in %")[1].split("wall time")[0] == out_s.split("accuracy in %")[1].split("wall time")[0]
    log = [json.loads(line) for line in (par / "train_log.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["training"]) for r in log) == [("cnn", "agnostic"), ("cnn", "aware2"),
                                                                 ("scnn", "agnostic"), ("scnn", "aware2")]


def test_analog_on_ray_same_rows_as_serial(local_ray, tmp_path, capsys):
    argv = ("analog", "--preset", "smoke", "--no-progress", "--threads", "1", "--programmings", "2",
            "--test-sigmas", "0.08", "--levels", "1", "2")
    rc, _, err = _cli(capsys, *argv, "--out", str(tmp_path / "serial"))
    assert rc == 0, err
    rc, _, err = _cli(capsys, *argv, "--out", str(tmp_path / "ray"), "--backend", "ray")
    assert rc == 0, err
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "serial")
    assert len(_rows(tmp_path / "ray")) == 2 * 2  # levels x train sigmas
    for name in ("deterministic.csv", "summary.md"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "serial" / name).read_text()
    assert sorted(p.name for p in (tmp_path / "ray" / "models").iterdir()) == \
        sorted(p.name for p in (tmp_path / "serial" / "models").iterdir())
