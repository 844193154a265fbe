"""``spikenoise compare`` end to end on the hidden smoke preset (synthetic toy data, seconds)."""
from __future__ import annotations

import json

import pytest

from spikenoise import cli

SMOKE_FILES = ["results.jsonl", "results.csv", "config.json", "summary.csv", "table.txt", "accuracy.png",
               "scales.png", "weight_levels.png", "level_snr.png", "analysis.json", "models.csv",
               "train_log.jsonl", "run.json"]


def _run(capsys, *argv):
    rc = cli.main(["compare", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _table_rows(text):
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("model ") and "level 0" in l)
    rows = []
    for l in lines[start + 2:]:
        if not l.strip():
            break
        rows.append(l.split())
    return lines[start].split(), rows


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "run"
    return out


def test_compare_smoke_end_to_end_then_resume(smoke, capsys, monkeypatch):
    rc, out, err = _run(capsys, "--preset", "smoke", "--out", str(smoke), "--no-progress")
    assert rc == 0, err
    for f in SMOKE_FILES:
        assert (smoke / f).is_file(), f
    for f in ("accuracy.png", "scales.png", "weight_levels.png", "level_snr.png"):
        assert (smoke / f).read_bytes()[:4] == b"\x89PNG"
    ckpts = sorted(p.name for p in (smoke / "checkpoints").iterdir())
    assert ckpts == ["cnn_agnostic_s0.pt", "cnn_aware2_s0.pt", "scnn_agnostic_s0.pt", "scnn_aware2_s0.pt"]

    head, rows = _table_rows(out)
    assert head == ["model", "training", "errors", "level", "0", "level", "2", "M"]
    assert [r[:3] for r in rows] == [[m, t, e] for m in ("cnn", "scnn") for t in ("agnostic", "aware@2")
                                     for e in ("static", "dynamic")]
    for r in rows:  # "mean ± ci" per level, M = 1 training
        assert r[3 + 1] == "±" and 0.0 <= float(r[3]) <= 100.0 and r[-1] == "1"
    assert (smoke / "table.txt").read_text().strip() in out

    lines = (smoke / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 2 * 2  # models x trainings x errors x levels
    first = json.loads(lines[0])
    assert set(first["key"]) == {"model", "training", "train_level", "seed", "errors", "level"}
    noisy = [json.loads(l) for l in lines if json.loads(l)["key"]["level"] == 2]
    assert all(len(r["accs"]) == 2 and len(r["rep_seeds"]) == 2 for r in noisy)
    cfg = json.loads((smoke / "config.json").read_text())
    assert cfg["config"]["repeats"] == 2 and cfg["config"]["data"] == "toy"
    assert cfg["environment"]["spikenoise"] and cfg["environment"]["torch"]
    summary = (smoke / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 16 - 0 and summary[0].startswith("model,training,train_level,errors,level,mean")
    models = (smoke / "models.csv").read_text().splitlines()
    assert models[0].startswith("model,parameters") and len(models) == 3
    assert "wall time" in out

    # -- rerun: nothing is trained or evaluated again, same table ------------------------------
    import spikenoise.evaluate as ev
    import spikenoise.train as tr

    def boom(*a, **k):
        raise AssertionError("recomputed on resume")

    monkeypatch.setattr(tr, "run_epoch", boom)
    monkeypatch.setattr(ev, "noisy_accuracy", boom)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (smoke / "checkpoints").iterdir()}
    rc, out2, err2 = _run(capsys, "--preset", "smoke", "--out", str(smoke), "--no-progress")
    assert rc == 0, err2
    assert _table_rows(out2) == _table_rows(out)
    assert len((smoke / "results.jsonl").read_text().splitlines()) == 16
    assert {p.name: p.stat().st_mtime_ns for p in (smoke / "checkpoints").iterdir()} == mtimes

    # -- other options in the same folder are refused ------------------------------------------
    rc, _, err3 = _run(capsys, "--preset", "smoke", "--out", str(smoke), "--no-progress", "--repeats", "3")
    assert rc == 2 and "different configuration" in err3 and "--fresh" in err3


def test_compare_fresh_starts_over(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--preset", "smoke", "--out", str(out), "--no-progress", "--models", "cnn", "--aware-level", "none"]
    rc, o1, e1 = _run(capsys, *args)
    assert rc == 0, e1
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    (out / "checkpoints" / "stale.pt").write_bytes(b"x")
    rc, o2, e2 = _run(capsys, *args, "--fresh", "--levels", "0")
    assert rc == 0, e2
    assert not (out / "checkpoints" / "stale.pt").exists()
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["key"]["errors"], r["key"]["level"]) for r in rows] == [("static", 0), ("dynamic", 0)]
    head, trows = _table_rows(o2)
    assert head[3:] == ["level", "0", "M"] and [r[1] for r in trows] == ["agnostic", "agnostic"]


@pytest.mark.parametrize("argv, message", [
    (["--models", "cnn,lstm"], "unknown model(s) ['lstm']"),
    (["--levels", "0,5"], "noise levels must be among [0, 1, 2, 3]"),
    (["--levels", "a"], None),  # argparse type error: exit 2
    (["--aware-level", "7"], "--aware-level must be 1, 2, 3, 'each' or 'none'"),
    (["--data", "fsdd", "--root", "/nonexistent/fsdd"], "data folder not found"),
    (["--data", "gscd"], "--data gscd needs --root PATH"),
    (["--preset", "paper"], "the paper preset uses GSCD v2"),
    (["--data", "embedded", "--root", "/tmp"], "--root applies to --data gscd or fsdd"),
    (["--trainings", "0"], "--trainings must be a positive integer"),
    (["--device", "cuda:0"], None),
])
def test_compare_bad_input_gives_a_clear_error(tmp_path, capsys, argv, message):
    if argv[:2] == ["--device", "cuda:0"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        message = "no CUDA device"
    try:
        rc, out, err = _run(capsys, "--preset", "smoke", "--out", str(tmp_path / "o"), "--no-progress", *argv)
    except SystemExit as e:  # argparse rejects the value itself
        assert message is None and e.code == 2
        return
    assert rc == 2 and message is not None
    assert message in err and err.startswith("spikenoise compare: error:")
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_compare_help_lists_presets(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "quick" in text and "paper" in text and "--aware-level" in text and "--fresh" in text


def _resolved(*argv):
    import argparse

    from spikenoise.studies.compare import add_arguments, resolve

    p = argparse.ArgumentParser()
    add_arguments(p)
    return resolve(p.parse_args(list(argv)))


def test_quick_runs_on_every_core_where_ray_is_installed_and_paper_stays_serial(monkeypatch):
    from spikenoise.studies.compare import options

    monkeypatch.setattr(options, "auto_backend", lambda: "ray")
    assert _resolved("--preset", "quick")["backend"] == "ray"
    assert _resolved("--preset", "quick", "--backend", "serial")["backend"] == "serial"
    assert _resolved("--preset", "smoke")["backend"] == "serial"
    assert _resolved("--preset", "paper", "--data", "embedded")["backend"] == "serial"
    monkeypatch.setattr(options, "auto_backend", lambda: "serial")  # no Ray, or one CPU
    assert _resolved("--preset", "quick")["backend"] == "serial"


def test_quick_preset_is_the_measured_operating_point_and_paper_the_papers_protocol():
    from spikenoise.studies.compare import PRESETS

    q, p = PRESETS["quick"], PRESETS["paper"]
    assert q["data"] == "embedded" and q["sizes"][2] >= 500  # issue 13: >= 500 test clips
    assert (p["epochs"], p["finetune_epochs"], p["batch_size"], p["lr"], p["weight_lr"], p["trainings"],
            p["repeats"], p["width"], p["aware"], p["finetune_lr_scale"]) == (100, 100, 128, 1e-3, 1e-2, 5, 10,
                                                                               "full", "each", 1.0)


def test_per_model_epochs_of_the_preset_yield_to_an_explicit_epochs_flag():
    from spikenoise.studies.compare import PRESETS
    from spikenoise.studies.compare.options import add_arguments, resolve
    from spikenoise.studies.compare.protocol import train_hparams
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = resolve(p.parse_args(["--preset", "quick", "--backend", "serial"]))
    per = PRESETS["quick"]["model_epochs"]
    assert per and all(train_hparams(cfg, m, 0, 0)["epochs"] == e for m, e in per.items())
    assert train_hparams(cfg, "rnn", 0, 0)["epochs"] == cfg["epochs"]
    assert train_hparams(cfg, "cnn", 2, 0)["epochs"] == cfg["finetune_epochs"]  # fine-tuning is not per model
    cfg = resolve(p.parse_args(["--preset", "quick", "--backend", "serial", "--epochs", "3"]))
    assert {train_hparams(cfg, m, 0, 0)["epochs"] for m in ("cnn", "scnn", "rnn")} == {3}
