"""The study scaffold: shared options, presets, one-line errors, FSDD folder from option or environment."""
from __future__ import annotations

import argparse

import pytest

from spikenoise import cli
from spikenoise.studies import scaffold
from spikenoise.studies.scaffold import StudyError


def _parser(study):
    import importlib

    p = argparse.ArgumentParser()
    importlib.import_module(f"spikenoise.studies.{study}").add_arguments(p)
    return p


@pytest.mark.parametrize("study", ["compare", "bitflip", "bnn", "analog", "resilience"])
def test_every_study_has_the_shared_options_and_a_relative_default_out(study):
    args = _parser(study).parse_args([])
    assert args.out == f"runs/{study}"  # relative to the working directory, never a system folder
    for name in ("preset", "seed", "threads", "fresh", "progress", "data", "root"):
        assert hasattr(args, name), name


def test_resolve_preset_overrides_only_given_options():
    presets = {"a": {"epochs": 3, "lr": 0.1}}
    args = argparse.Namespace(preset="a", epochs=5, lr=None, seed=7)
    assert scaffold.resolve_preset(presets, args, ["seed"], {"batch": 4}) == \
        {"batch": 4, "epochs": 5, "lr": 0.1, "seed": 7, "preset": "a"}
    with pytest.raises(StudyError, match="unknown preset 'b'"):
        scaffold.resolve_preset(presets, argparse.Namespace(preset="b"))


@pytest.mark.parametrize("study", ["analog", "resilience", "bitflip", "bnn"])
def test_fsdd_without_a_folder_is_one_clear_line(study, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPIKENOISE_FSDD", raising=False)
    rc = cli.main([study, "--data", "fsdd", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"spikenoise {study}: error:") and "SPIKENOISE_FSDD" in err and "--root" in err
    monkeypatch.setenv("SPIKENOISE_FSDD", str(tmp_path / "nowhere"))
    rc = cli.main([study, "--data", "fsdd", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and "FSDD folder not found" in capsys.readouterr().err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    from spikenoise.studies import bnn

    def boom(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bnn, "main", boom)
    assert cli.main(["bnn", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: disk on fire" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(["bnn", "--out", str(tmp_path), "--debug"])


def test_bad_option_values_are_usage_errors(tmp_path, capsys):
    assert cli.main(["bitflip", "--dtypes", "float7", "--out", str(tmp_path)]) == 2
    assert "unknown dtype 'float7'" in capsys.readouterr().err
    assert cli.main(["bnn", "--test-bers", "0,2", "--out", str(tmp_path)]) == 2
    assert "--test-bers must be bit error rates in [0, 1]" in capsys.readouterr().err
    assert cli.main(["analog", "--adc-range", "big", "--out", str(tmp_path)]) == 2
    assert "--adc-range must be a number or 'auto'" in capsys.readouterr().err
