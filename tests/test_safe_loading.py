"""Loading never runs code: checkpoints, feature-cache entries, model state dicts and result folders.

Every loader gets a crafted file whose unpickling would create a marker file (a ``__reduce__``
payload); the tests assert the loader refuses it, names the file, and that the marker is absent.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import spikenoise as sn
from spikenoise.data import cache
from spikenoise.results import ResultStore
from spikenoise.safeload import FileLoadError, UnsafeFileError, safe_torch_load
from spikenoise.train import checkpoint_done, fit, load_checkpoint

from spikenoise.synapse import tile

PACKAGE = Path(sn.__file__).resolve().parent


class _Payload:
    """Unpickling this creates ``marker``: what a malicious file would do with any other call."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _crafted(path: Path, marker: Path, wrap=lambda p: p) -> Path:
    torch.save(wrap(_Payload(marker)), path)
    assert not marker.exists()
    return path


def test_the_payload_is_real(tmp_path):
    # without weights_only the crafted file does run code; the tests below would otherwise prove nothing
    marker = tmp_path / "ran"
    p = _crafted(tmp_path / "x.pt", marker)
    torch.load(p, weights_only=False)
    assert marker.exists()


def test_no_unsafe_load_in_the_package():
    bad = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load\(")
    hits = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}"
            for p in PACKAGE.rglob("*.py") if p.name != "safeload.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert hits == []  # every .pt read goes through spikenoise.safeload


# ------------------------------------------------------------------------------------ checkpoints

class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = sn.NoisyLinear(6, 3, reads="once")

    def forward(self, x):
        sn.new_inference(self)
        return self.fc(x)


def _loader(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))


def _fit(ckpt, epochs=1):
    torch.manual_seed(0)
    m = _Net()
    return m, fit(m, _loader(), None, epochs=epochs, checkpoint=ckpt, progress=False)


def test_checkpoint_round_trip_with_tensor_rng_states(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    m, hist = _fit(ckpt)
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()  # as saved at the last epoch
    got = load_checkpoint(ckpt)
    assert got["version"] == 2 and got["epoch"] == 1 and got["history"] == hist
    assert isinstance(got["rng"]["python"]["key"], torch.Tensor)
    assert tuple(got["rng"]["python"]["key"].tolist()) == py[1]
    assert np.array_equal(got["rng"]["numpy"]["key"].numpy(), npy[1]) and got["rng"]["numpy"]["pos"] == npy[2]
    assert torch.equal(got["rng"]["torch"], th)
    fresh = _Net()
    load_checkpoint(ckpt, fresh)
    for k, v in m.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]) if isinstance(v, torch.Tensor) else v == fresh.state_dict()[k]
    assert checkpoint_done(ckpt)


def test_version_1_checkpoints_still_load_and_resume(tmp_path):
    # version 1 stored RNG states as Python tuples and a NumPy array (written here as it wrote them)
    ckpt = tmp_path / "ckpt.pt"
    _fit(ckpt, epochs=2)
    v2 = load_checkpoint(ckpt)
    v1 = dict(v2, version=1, epoch=1, history=v2["history"][:1],
              rng={"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()})
    torch.save(v1, ckpt)
    assert isinstance(load_checkpoint(ckpt)["rng"]["numpy"][1], np.ndarray)
    _, hist = _fit(ckpt, epochs=2)  # resumes epoch 2, restoring the tuple-form RNG states
    assert [h["epoch"] for h in hist] == [1, 2]
    assert load_checkpoint(ckpt)["version"] == 2


def test_crafted_checkpoint_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    ckpt = _crafted(tmp_path / "ckpt.pt", marker,
                    lambda p: {"format": "spikenoise.train", "version": 2, "model": {"w": p}})
    with pytest.raises(UnsafeFileError, match=re.escape(str(ckpt))) as e:
        load_checkpoint(ckpt)
    assert "refused" in str(e.value) and e.value.path == ckpt
    with pytest.raises(UnsafeFileError, match=re.escape(str(ckpt))):
        _fit(ckpt)  # resuming from a planted checkpoint
    with pytest.raises(UnsafeFileError):
        checkpoint_done(ckpt)
    assert not marker.exists()


def test_damaged_checkpoint_names_the_file(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _fit(ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(FileLoadError, match=re.escape(str(ckpt))):
        load_checkpoint(ckpt)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(FileLoadError, match="not a spikenoise training checkpoint"):
        load_checkpoint(other)
    assert not checkpoint_done(ckpt)


@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw-pickle"])
def test_every_file_format_is_refused_without_running(tmp_path, fmt):
    marker, p = tmp_path / "ran", tmp_path / "x.pt"
    if fmt == "raw-pickle":
        p.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=2))
    else:
        torch.save({"w": _Payload(marker)}, p, _use_new_zipfile_serialization=fmt == "zip")
    with pytest.raises(UnsafeFileError, match=re.escape(str(p))) as e:
        safe_torch_load(p)
    assert "io.open" in str(e.value)  # the message names what the file would have called
    assert not marker.exists()


# ---------------------------------------------------------------------------------- feature cache

def _entry():
    return {"splits": {"train": {"logmel": torch.randn(3, 5, 4).half(), "labels": torch.tensor([0, 2, 1]),
                                 "word": ["yes", "no", "up"], "snr_db": torch.tensor([1.0, 2.0, 3.0])}},
            "noise_bank": torch.zeros(2, 5, 4, dtype=torch.float16), "info": {"n": 3, "speakers": [1, 2]},
            "skipped": []}


def test_cache_round_trip_private_folder_and_files(tmp_path):
    root = tmp_path / "new" / "cache"
    e = _entry()
    p = cache.save_entry(root, "abc", e)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    got = cache.load_entry(root, "abc")
    assert got["info"] == e["info"] and got["splits"]["train"]["word"] == ["yes", "no", "up"]
    assert torch.equal(got["splits"]["train"]["logmel"], e["splits"]["train"]["logmel"])
    assert cache.load_entry(root, "missing") is None


def test_cache_entry_under_the_wrong_key_is_recomputed(tmp_path):
    p = cache.save_entry(tmp_path, "aaa", _entry())
    os.replace(p, tmp_path / "kws-bbb.pt")  # renamed / planted under another key
    assert cache.load_entry(tmp_path, "bbb") is None
    torch.save(_entry(), tmp_path / "kws-ccc.pt")  # an entry without its key (written before keys were stored)
    assert cache.load_entry(tmp_path, "ccc") is None
    (tmp_path / "kws-ddd.pt").write_bytes(b"not a torch file")
    assert cache.load_entry(tmp_path, "ddd") is None


def test_crafted_cache_entry_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    p = _crafted(tmp_path / "kws-eee.pt", marker,
                 lambda x: {"format": cache.ENTRY_FORMAT, "key": "eee", "entry": {"info": x}})
    with pytest.warns(RuntimeWarning, match=re.escape(str(p))):
        assert cache.load_entry(tmp_path, "eee") is None
    assert not marker.exists()


# ------------------------------------------------------------------------------ model state dicts

def _models():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    nvm = sn.convert(plain, sn.MultiLevelNVM(0.2), errors="dynamic", reads="spike")
    flips = sn.convert(plain, sn.BitFlip(0.01, 0.02, dtype="int8"), errors="static", reads="once")
    tiled = tile(plain, array=(8, 2), adc_bits=6, adc_range=3.0, input_bits=4, input_range=2.0)
    return {"nvm": nvm, "bitflip": flips, "tiled": tiled}


@pytest.mark.parametrize("name", ["nvm", "bitflip", "tiled"])
def test_converted_state_dict_round_trips_weights_only(tmp_path, name):
    model = _models()[name]
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    loaded = safe_torch_load(path)
    other = _models()[name]
    sn.configure(other, errors="none", reads="once", error_model=sn.MultiLevelNVM(0.9))  # differs everywhere
    with torch.no_grad():
        for prm in other.parameters():
            prm.add_(1.0)
    other.load_state_dict(loaded)
    want, got = model.state_dict(), other.state_dict()
    assert want.keys() == got.keys()
    for k, v in want.items():
        assert torch.equal(v, got[k]) if isinstance(v, torch.Tensor) else v == got[k], k
    assert any(k.endswith("_extra_state") for k in want)


def test_crafted_state_dict_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    p = _crafted(tmp_path / "sd.pt", marker, lambda x: {"fc._extra_state": {"error_model": x}})
    with pytest.raises(UnsafeFileError, match=re.escape(str(p))):
        safe_torch_load(p)
    assert not marker.exists()


# --------------------------------------------------------------------------------- result folders

def test_result_folder_is_json_only(tmp_path):
    store = ResultStore(tmp_path, {"a": 1})
    store.add({"k": 1}, {"acc": 0.5})
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('[1, 2]\n"text"\n')  # valid JSON that is not a row: skipped, nothing evaluated
    again = ResultStore(tmp_path, {"a": 1})
    assert again.done({"k": 1}) and len(again.rows()) == 1
    (tmp_path / "config.json").write_text("cos\nsystem\n(S'echo'\ntR.")  # a pickle, not JSON
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "config.json"))):
        ResultStore(tmp_path, {"a": 1})
