"""Bad inputs and faults for results, statistics, data loaders, checkpoints and accuracy (issue 11, part B).

Each bad input asserts the exception type and that the message names the parameter or the bad
value; each fault (torn line, conflicting duplicate, damaged config / checkpoint, crash while
saving) asserts that nothing already on disk is lost and that the damaged file is named.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import spikenoise as sn
from spikenoise.data import DataLayoutError, load_kws
from spikenoise.evaluate import accuracy
from spikenoise.results import (ConfigMismatchError, ConflictingRowError, ResultStore, ResultStoreError,
                                ResultStoreWarning, mean_ci)
from spikenoise.safeload import FileLoadError
from spikenoise.train import fit, load_checkpoint

NAN = float("nan")


# ------------------------------------------------------------------------------ bad inputs: mean_ci
@pytest.mark.parametrize("args, kwargs, exc, pattern", [
    (([0.5, NAN],), {}, ValueError, r"values\[1\] is nan"),
    (([0.5, math.inf],), {}, ValueError, r"values\[1\] is inf"),
    (([-math.inf, 0.5],), {}, ValueError, r"values\[0\] is -inf"),
    (([],), {}, ValueError, "empty"),
    (([NAN],), {"nan_policy": "omit"}, ValueError, "empty.*dropping NaN"),
    (("0.5",), {}, TypeError, "string '0.5'"),
    (([0.5, "a"],), {}, TypeError, r"values\[1\] is not a real number: 'a'"),
    (([0.5, None],), {}, TypeError, r"values\[1\].*None"),
    (([0.5, 0.6],), {"confidence": 1.5}, ValueError, "confidence.*1.5"),
    (([0.5, 0.6],), {"confidence": NAN}, ValueError, "confidence.*nan"),
    (([0.5, 0.6],), {"confidence": 0}, ValueError, "confidence.*0"),
    (([0.5, 0.6],), {"confidence": "95%"}, TypeError, "confidence.*95%"),
    (([0.5, 0.6],), {"nan_policy": "ignore"}, ValueError, "nan_policy.*ignore"),
])
def test_mean_ci_bad_inputs(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        mean_ci(*args, **kwargs)


def test_mean_ci_nan_policy_omit_equals_dropping_them():
    assert mean_ci([0.5, NAN, 0.7, 0.9], nan_policy="omit") == mean_ci([0.5, 0.7, 0.9])


# ------------------------------------------------------------------------- bad inputs: ResultStore
class _Thing:
    pass


@pytest.mark.parametrize("key, values, exc, pattern", [
    ({"k": 1}, {"model": nn.Linear(1, 1)}, TypeError, r"column 'model'.*Linear"),
    ({"k": 1}, {"path": Path("x")}, TypeError, r"column 'path'.*Path"),
    ({"k": 1}, {"s": {1, 2}}, TypeError, r"column 's'.*set"),
    ({"k": 1}, {"nested": {"a": [1, _Thing()]}}, TypeError, r"column 'nested'\['a'\]\[1\].*_Thing"),
    ({"k": 1}, {"d": {1: 2}}, TypeError, r"column 'd'.*keys must be strings.*1"),
    ({"k": 1}, {"a": np.array(["x"])}, TypeError, r"column 'a'.*dtype"),
    ({"k": 1}, {"c": torch.tensor([1 + 2j])}, TypeError, r"column 'c'.*complex"),
    ({"k": _Thing()}, {"acc": 0.5}, TypeError, r"key\['k'\].*_Thing"),
    ([1, 2], {"acc": 0.5}, TypeError, r"key must be a dict.*list"),
    ({"k": 1}, [0.5], TypeError, r"values must be a dict.*list"),
    ({"k": 1}, {"key": 1}, ValueError, r"reserved.*'key'"),
    ({"k": 1}, {"time": 1}, ValueError, r"reserved.*'time'"),
    ({"k": 1}, {3: 1}, TypeError, r"column names must be strings, got 3"),
])
def test_store_add_bad_inputs(tmp_path, key, values, exc, pattern):
    store = ResultStore(tmp_path, {"a": 1})
    with pytest.raises(exc, match=pattern):
        store.add(key, values)
    assert not (tmp_path / "results.jsonl").exists() and store.rows() == []  # nothing half-written


def test_store_constructor_bad_inputs(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=re.escape(str(tmp_path / "file"))):
        ResultStore(tmp_path / "file", {})
    with pytest.raises(TypeError, match="config must be a mapping.*list"):
        ResultStore(tmp_path / "r", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="resume must be True or False, got 'yes'"):
        ResultStore(tmp_path / "r", {}, resume="yes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad inputs: load_kws
@pytest.mark.parametrize("args, kwargs, exc, pattern", [
    ((3,), {}, TypeError, "name must be one of.*got 3"),
    (("timit",), {}, ValueError, "name='timit'"),
    (("embedded",), {"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
    (("embedded",), {"seed": 1.5}, ValueError, "seed.*1.5"),
    (("embedded",), {"seed": True}, ValueError, "seed.*True"),
    (("embedded",), {"n_train": -1}, ValueError, "n_train.*-1"),
    (("embedded",), {"n_val": 2.5}, ValueError, "n_val.*2.5"),
    (("embedded",), {"n_test": "10"}, ValueError, "n_test.*'10'"),
    (("fsdd",), {"root": "/nonexistent", "split": "random"}, ValueError, "split.*'random'"),
    (("embedded",), {"features": "mfcc"}, TypeError, "features must be a FeatureConfig.*str"),
    (("embedded",), {"augment": "yes"}, TypeError, "augment.*str"),
    (("embedded",), {"preset": "huge"}, ValueError, "preset.*'huge'"),
    (("embedded",), {"embedded_config": "x"}, TypeError, "embedded_config.*str"),
    (("embedded",), {"root": "/x"}, ValueError, "root"),
    (("embedded",), {"colour": 1}, TypeError, "option.*colour"),
    (("gscd",), {"root": 5}, TypeError, "root must be a folder path.*5"),
    (("gscd",), {"root": "/nonexistent/gscd"}, DataLayoutError, "/nonexistent/gscd"),
    (("fsdd",), {"root": "/nonexistent/fsdd"}, FileNotFoundError, "/nonexistent/fsdd"),
    (("gscd",), {"root": "/x", "silence_fraction": -0.1}, ValueError, "silence_fraction.*-0.1"),
    (("gscd",), {"root": "/x", "silence_fraction": "lots"}, ValueError, "silence_fraction.*'lots'"),
    (("gscd",), {"root": "/x", "unknown_fraction": NAN}, ValueError, "unknown_fraction.*nan"),
    (("gscd",), {"root": "/x", "test_root": 7}, TypeError, "test_root.*7"),
])
def test_load_kws_bad_arguments(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        load_kws(*args, progress=False, use_cache=False, **kwargs)


SR = 16000


def _fsdd_folder(root: Path, digits=range(10), garbage=True) -> Path:
    rec = root / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in digits:
        for take in (0, 5, 10):
            p = rec / f"{d}_ann_{take}.wav"
            if garbage:
                p.write_bytes(b"RIFF....WAVEfmt not audio at all")
            else:
                sf.write(p, (0.1 * rng.standard_normal(4000)).astype(np.float32), 8000)
    return root


def test_fsdd_all_unreadable_is_an_error_naming_the_folder(tmp_path):
    root = _fsdd_folder(tmp_path / "fsdd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the per-file skip warning comes first
        with pytest.raises(DataLayoutError, match=r"none of the 10 WAV files of the train split in .*recordings"
                                                  r"(.|\n)*Expected the Free Spoken Digit Dataset layout"):
            load_kws("fsdd", root=root, progress=False, use_cache=False)


def test_fsdd_missing_digit_and_bad_speakers(tmp_path):
    with pytest.raises(DataLayoutError, match=r"no file of digit\(s\) \[7\]"):
        load_kws("fsdd", root=_fsdd_folder(tmp_path / "a", [d for d in range(10) if d != 7]), progress=False)
    root = _fsdd_folder(tmp_path / "b", garbage=False)
    with pytest.raises(ValueError, match=r"test_speakers.*\[1\]"):
        load_kws("fsdd", root=root, split="speaker", test_speakers=[1], progress=False, use_cache=False)
    with pytest.raises(ValueError, match=r"speaker\(s\) \['bob'\] not in FSDD folder"):
        load_kws("fsdd", root=root, split="speaker", test_speakers="bob", val_speakers="ann", progress=False)
    # a lone string is one speaker, not its letters
    with pytest.raises(ValueError, match=r"\['ann'\] are in both test_speakers and val_speakers"):
        load_kws("fsdd", root=root, split="speaker", test_speakers="ann", val_speakers="ann", progress=False)
    # a split that ends up with no clip is an error, not an empty data set
    for p in (root / "recordings").glob("*_5.wav"):
        p.unlink()
    with pytest.raises(DataLayoutError, match=r"val split of fsdd data in .*recordings' is empty"):
        load_kws("fsdd", root=root, progress=False, use_cache=False, augment=False)


def _gscd_folder(root: Path, garbage: bool, empty_word: str | None = None) -> Path:
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    for w in words:
        (root / w).mkdir(parents=True)
        if w == empty_word:
            continue
        for k in range(3):
            (root / w / f"{k:08x}_nohash_0.wav").write_bytes(b"RIFF....WAVEfmt not audio")
    (root / "validation_list.txt").write_text("yes/00000001_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/00000002_nohash_0.wav\n")
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "n.wav", np.zeros(2 * SR, np.float32) + 0.01, SR)
    return root


def test_gscd_all_unreadable_and_empty_class_are_errors(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(DataLayoutError, match=r"none of the 28 WAV files of the train split in .*'(.|\n)*"
                                                  r"Google Speech Commands v2 layout"):
            load_kws("gscd", root=_gscd_folder(tmp_path / "g", True), progress=False, use_cache=False)
    with pytest.raises(DataLayoutError, match=r"keyword folder\(s\) stop/ hold no WAV"):
        load_kws("gscd", root=_gscd_folder(tmp_path / "h", True, "stop"), progress=False, use_cache=False)


# ------------------------------------------------------------------------------ accuracy, NaN logits
class _Fixed(nn.Module):
    """Returns stored logits batch by batch (ignores its input)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.i = 0
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = self.logits[self.i: self.i + x.shape[0]]
        self.i += x.shape[0]
        return out


def test_accuracy_never_picks_a_nan_class():
    logits = torch.tensor([[0.0, NAN], [2.0, 1.0], [math.inf, 0.0], [0.0, 1.0]])
    y = torch.tensor([1, 0, 0, 1])  # argmax would call row 0 "class 1" (NaN wins) and row 2 class 0
    batches = [(torch.zeros(4, 1), y)]
    with pytest.raises(FloatingPointError, match="2 of 4 samples got non-finite"):
        accuracy(_Fixed(logits), batches)
    assert accuracy(_Fixed(logits), batches, nonfinite="wrong") == 0.5  # rows 1 and 3 only
    with pytest.raises(ValueError, match="nonfinite.*'skip'"):
        accuracy(_Fixed(logits), batches, nonfinite="skip")
    with pytest.raises(ValueError, match=r"logits \[batch, classes\].*\(4,\)"):
        accuracy(_Fixed(torch.zeros(4)), batches)


# ------------------------------------------------------------------------------------ store faults
def _lines(path):
    return path.read_text().splitlines()


def test_torn_last_line_is_set_aside_and_the_next_row_survives(tmp_path):
    store = ResultStore(tmp_path, {"a": 1})
    store.add({"k": 1}, {"acc": 0.5})
    store.add({"k": 2}, {"acc": 0.6})
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"acc": 0.7, "key": {"k": 3}, "ti')  # killed mid-write
    with pytest.warns(ResultStoreWarning, match=r"line 3 was cut short.*results\.jsonl\.torn"):
        again = ResultStore(tmp_path, {"a": 1})
    assert [r["key"]["k"] for r in again.rows()] == [1, 2] and not again.done({"k": 3})
    assert again.damaged == [(3, '{"acc": 0.7, "key": {"k": 3}, "ti')]
    again.add({"k": 3}, {"acc": 0.7})
    again.add({"k": 4}, {"acc": 0.8})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file is clean now: no warning on reload
        third = ResultStore(tmp_path, {"a": 1})
    assert [(r["key"]["k"], r["acc"]) for r in third.rows()] == [(1, 0.5), (2, 0.6), (3, 0.7), (4, 0.8)]
    assert all(json.loads(line) for line in _lines(tmp_path / "results.jsonl"))
    assert (tmp_path / "results.jsonl.torn").read_text() == '{"acc": 0.7, "key": {"k": 3}, "ti\n'


def test_complete_last_row_without_newline_is_kept(tmp_path):
    ResultStore(tmp_path, {}).add({"k": 1}, {"acc": 0.5})
    p = tmp_path / "results.jsonl"
    p.write_text(p.read_text() + '{"acc": 0.6, "key": {"k": 2}}')
    store = ResultStore(tmp_path, {})
    store.add({"k": 3}, {"acc": 0.7})
    assert [r["key"]["k"] for r in ResultStore(tmp_path, {}).rows()] == [1, 2, 3]
    assert not (tmp_path / "results.jsonl.torn").exists()


def test_unreadable_middle_lines_are_reported_by_number(tmp_path):
    store = ResultStore(tmp_path, {})
    store.add({"k": 1}, {"acc": 0.5})
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"acc": 0.{"acc": 0.6, "key": {"k": 2}}\n')  # an old glued line
    with pytest.warns(ResultStoreWarning, match=r"skipped 1 line\(s\).*line 2"):
        again = ResultStore(tmp_path, {})
    assert [r["key"]["k"] for r in again.rows()] == [1]


def test_conflicting_duplicate_rows_raise_naming_key_lines_and_both_values(tmp_path):
    store = ResultStore(tmp_path, {})
    store.add({"k": 1}, {"acc": 0.5, "seconds": 1.0})
    store.add({"k": 1}, {"acc": 0.5, "seconds": 9.0})  # same result, other timing: a no-op
    assert len(_lines(tmp_path / "results.jsonl")) == 1
    with pytest.raises(ConflictingRowError, match=r"already stored \(line 1\).*'acc': 0.5.*'acc': 0.9"):
        store.add({"k": 1}, {"acc": 0.9})
    assert len(_lines(tmp_path / "results.jsonl")) == 1  # nothing written
    store.add({"k": 2}, {"acc": 0.6})
    with open(tmp_path / "results.jsonl", "a") as fh:  # e.g. two runs writing into one folder
        fh.write(_lines(tmp_path / "results.jsonl")[0] + "\n")  # identical duplicate: fine
    assert len(ResultStore(tmp_path, {}).rows()) == 2
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write(json.dumps({"key": {"k": 2}, "acc": 0.1}) + "\n")
    with pytest.raises(ConflictingRowError, match=r"lines 2 and 4 .* key \{'k': 2\}: \{'acc': 0.6\} vs "
                                                  r"\{'acc': 0.1\}.*Delete the wrong line") as e:
        ResultStore(tmp_path, {})
    assert e.value.key == {"k": 2} and e.value.old == {"acc": 0.6} and e.value.new == {"acc": 0.1}


def test_damaged_config_is_named_and_the_rows_survive_the_way_out(tmp_path):
    store = ResultStore(tmp_path, {"a": 1})
    store.add({"k": 1}, {"acc": 0.5})
    rows_before = (tmp_path / "results.jsonl").read_text()
    cfg = tmp_path / "config.json"
    cfg.write_text('{"config": {"a": 1')  # truncated
    with pytest.raises(ResultStoreError, match=re.escape(str(cfg)) + r" is damaged.*move .* aside") as e:
        ResultStore(tmp_path, {"a": 1})
    assert e.value.path == cfg and "--fresh" not in str(e.value)
    assert (tmp_path / "results.jsonl").read_text() == rows_before
    cfg.rename(tmp_path / "config.json.bad")  # the way out offered
    with pytest.warns(ResultStoreWarning, match="no config.json"):
        again = ResultStore(tmp_path, {"a": 1})
    assert again.done({"k": 1}) and json.loads(cfg.read_text())["config"] == {"a": 1}


def test_rerun_with_other_options_names_each_difference(tmp_path):
    ResultStore(tmp_path, {"epochs": 8, "lr": 0.001, "preset": "quick"}).add({"k": 1}, {"acc": 0.5})
    with pytest.raises(ConfigMismatchError) as e:
        ResultStore(tmp_path, {"epochs": 2, "lr": 0.001, "width": 64, "preset": "quick"})
    msg = str(e.value)
    assert "epochs: 8 before, 2 now" in msg and "width: '(absent)' before, 64 now" in msg
    assert "lr" not in msg and "--fresh" in msg and "--out" in msg and "resume=False" not in msg
    assert e.value.differences == [("epochs", 8, 2), ("width", "(absent)", 64)]
    # resume=False moves the old rows aside under a unique name, twice in the same second too
    ResultStore(tmp_path, {"epochs": 2}, resume=False).add({"k": 1}, {"acc": 0.6})
    ResultStore(tmp_path, {"epochs": 3}, resume=False)
    aside = sorted(tmp_path.glob("results.*.jsonl"))
    assert len(aside) == 2 and {json.loads(p.read_text())["acc"] for p in aside} == {0.5, 0.6}


def test_tensor_and_numpy_values_are_stored_as_numbers(tmp_path):
    store = ResultStore(tmp_path, {})
    store.add({"seed": np.int64(3), "p": torch.tensor(0.25)},
              {"acc": torch.tensor(0.5), "n": np.int32(7), "f": np.float32(0.125), "flag": np.bool_(True),
               "zero_d": np.array(1.5), "vec": torch.tensor([1, 2]), "mat": np.eye(2), "t": (1, 2.5),
               "grad": torch.tensor(2.0, requires_grad=True) * 1, "nan": float("nan")})
    raw = json.loads(_lines(tmp_path / "results.jsonl")[0])
    assert raw["key"] == {"seed": 3, "p": 0.25} and type(raw["key"]["seed"]) is int
    assert raw["acc"] == 0.5 and type(raw["acc"]) is float
    assert raw["n"] == 7 and type(raw["n"]) is int and raw["f"] == 0.125 and raw["flag"] is True
    assert raw["zero_d"] == 1.5 and raw["vec"] == [1, 2] and raw["mat"] == [[1.0, 0.0], [0.0, 1.0]]
    assert raw["t"] == [1, 2.5] and raw["grad"] == 2.0 and math.isnan(raw["nan"])
    assert store.done({"seed": 3, "p": 0.25}) and ResultStore(tmp_path, {}).done({"seed": 3, "p": 0.25})


# ------------------------------------------------------------------------------- checkpoint faults
class _Net(nn.Module):
    def __init__(self, n_out=3):
        super().__init__()
        self.fc = sn.NoisyLinear(6, n_out, reads="once")

    def forward(self, x):
        sn.new_inference(self)
        return self.fc(x)


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 6, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)


def _fit(ckpt, epochs=1, n_out=3):
    torch.manual_seed(0)
    m = _Net(n_out)
    return m, fit(m, _loader(), None, epochs=epochs, checkpoint=ckpt, progress=False)


def test_truncated_checkpoint_is_named_with_a_targeted_way_out(tmp_path):
    ckpt = tmp_path / "net_s0.pt"
    other = tmp_path / "other.pt"
    _fit(ckpt, epochs=1)
    other.write_bytes(ckpt.read_bytes())
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    for call in (lambda: load_checkpoint(ckpt), lambda: _fit(ckpt, epochs=2)):
        with pytest.raises(FileLoadError, match=re.escape(str(ckpt)) + r".*delete " + re.escape(str(ckpt))
                           + r" to redo that training only") as e:
            call()
        assert e.value.path == ckpt
    assert load_checkpoint(other)["epoch"] == 1  # the other checkpoint is untouched


@pytest.mark.parametrize("damage, pattern", [
    (lambda c: {k: v for k, v in c.items() if k not in ("history", "rng")}, "lacks history, rng"),
    (lambda c: {**c, "format": "other"}, "not a spikenoise training checkpoint"),
    (lambda c: [1, 2], "not a spikenoise training checkpoint"),
])
def test_damaged_checkpoint_contents_are_named(tmp_path, damage, pattern):
    ckpt = tmp_path / "c.pt"
    _fit(ckpt)
    torch.save(damage(torch.load(ckpt, weights_only=True)), ckpt)
    with pytest.raises(FileLoadError, match=pattern + r".*delete " + re.escape(str(ckpt))):
        load_checkpoint(ckpt)


def test_checkpoint_of_another_model_is_named(tmp_path):
    ckpt = tmp_path / "c.pt"
    _fit(ckpt, n_out=3)
    with pytest.raises(FileLoadError, match=re.escape(str(ckpt)) + r" does not fit _Net.*another model"):
        load_checkpoint(ckpt, _Net(n_out=5))


def test_crash_while_saving_a_checkpoint_leaves_no_temp_file(tmp_path, monkeypatch):
    ckpt = tmp_path / "c.pt"
    real_save = torch.save
    saved = []

    def save_then_fail_at_epoch_2(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # the bytes are written, then the process "dies" before the rename
        saved.append(obj["epoch"])
        if len(saved) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail_at_epoch_2)
    with pytest.raises(OSError, match="No space left"):
        _fit(ckpt, epochs=3)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no .c.pt.<pid>.tmp left
    assert saved == [1, 2] and load_checkpoint(ckpt)["epoch"] == 1  # the last good checkpoint
    _fit(ckpt, epochs=3)  # and training resumes from it
    assert load_checkpoint(ckpt)["epoch"] == 3


# ---------------------------------------------------------------------------------- cache faults
def test_cache_entry_faults_leave_no_temp_file_and_damage_is_reported(tmp_path, monkeypatch):
    from spikenoise.data import cache

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.save_entry(tmp_path, "k1", {"x": torch.zeros(2)})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    p = cache.save_entry(tmp_path, "k1", {"x": torch.zeros(2)})
    p.write_bytes(p.read_bytes()[:50])
    with pytest.warns(RuntimeWarning, match=r"damaged feature-cache entry ignored and recomputed.*" + re.escape(p.name)):
        assert cache.load_entry(tmp_path, "k1") is None


def test_noisy_accuracy_counts_nonfinite_outputs_as_wrong():
    from spikenoise.evaluate import noisy_accuracy

    logits = torch.tensor([[0.0, NAN], [2.0, 1.0], [0.0, 1.0], [3.0, 1.0]])
    batches = [(torch.zeros(4, 1), torch.tensor([1, 0, 1, 0]))]
    net = _Fixed(logits)
    net.syn = sn.NoisyLinear(1, 1, reads="once")  # something for the error configuration to act on
    assert noisy_accuracy(net, batches, "none", 0, seed=0) == 0.75  # the NaN row is wrong, not class 1
    net.i = 0
    with pytest.raises(FloatingPointError, match="1 of 4 samples"):
        noisy_accuracy(net, batches, "none", 0, seed=0, nonfinite="raise")


def test_config_with_numpy_and_tensor_values_resumes(tmp_path):
    ResultStore(tmp_path, {"lr": np.float64(0.001), "n": torch.tensor(3), "root": Path("/data")}).add({"k": 1}, {})
    cfg = json.loads((tmp_path / "config.json").read_text())["config"]
    assert cfg == {"lr": 0.001, "n": 3, "root": "/data"}
    assert ResultStore(tmp_path, {"lr": 0.001, "n": 3, "root": "/data"}).done({"k": 1})
