"""Tests of the keyword-spotting data layer (spikenoise.data)."""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("torchaudio")

from spikenoise.data import (  # noqa: E402
    FSDD_CLASSES,
    GSCD_CLASSES,
    AugmentConfig,
    DataLayoutError,
    EmbeddedConfig,
    FeatureConfig,
    LogMel,
    load_kws,
    make_loaders,
    normalize,
    read_wav,
)
from spikenoise.data import _espeak  # noqa: E402

SR = 16000
KEYWORDS = GSCD_CLASSES[:10]


def _fsdd_root() -> Path:
    env = os.environ.get("SPIKENOISE_FSDD")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"


# ------------------------------------------------------------------------------------ features
def test_feature_shape_is_67_by_40():
    cfg = FeatureConfig()
    assert cfg.shape == (67, 40)
    assert (cfg.win_length, cfg.hop_length) == (480, 240)  # 30 ms / 15 ms at 16 kHz
    out = LogMel(cfg)(np.random.default_rng(0).standard_normal((3, SR)).astype(np.float32) * 0.1)
    assert out.shape == (3, 67, 40) and out.dtype == torch.float32


@pytest.mark.parametrize("freq", [300.0, 1000.0, 4000.0])
def test_logmel_puts_a_tone_in_the_right_band(freq):
    """The loudest Mel band of a pure tone has its centre near the tone (80 Hz .. 8 kHz, HTK mel)."""
    t = np.arange(SR) / SR
    lm = LogMel()(np.sin(2 * np.pi * freq * t).astype(np.float32))[0]
    band = int(lm.mean(0).argmax())
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    centers = 700 * (10 ** (np.linspace(mel(80), mel(8000), 42)[1:-1] / 2595) - 1)
    assert abs(np.log(centers[band] / freq)) < 0.12


def test_normalize_unit_variance_per_channel():
    x = torch.randn(5, 67, 40) * 3 + 7
    x[:, :, 3] = -13.8  # a digitally silent channel
    y = normalize(x)
    std = y.std(dim=1, unbiased=False)
    assert torch.allclose(std[:, [0, 1, 2, 4, 39]], torch.ones(5, 5), atol=1e-3)
    assert torch.allclose(y.mean(dim=1), torch.zeros(5, 40), atol=1e-4)
    assert torch.all(y[:, :, 3] == 0)
    z = normalize(x, center=False)
    assert torch.allclose(z.std(dim=1, unbiased=False)[:, 0], torch.ones(5), atol=1e-3)
    assert float(z.mean()) > 1.0  # not centred


def test_read_wav_resamples_mixes_and_rejects_garbage(tmp_path):
    st = np.stack([np.ones(8000), -np.ones(8000) * 0.5], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "st.wav", st, 8000)
    x = read_wav(tmp_path / "st.wav", SR)
    assert x.dtype == np.float32 and len(x) == 16000
    assert abs(float(np.median(x)) - 0.125) < 1e-3  # mean of the two channels
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00garbage")
    (tmp_path / "empty.wav").write_bytes(b"")
    assert read_wav(tmp_path / "bad.wav") is None and read_wav(tmp_path / "empty.wav") is None


# ---------------------------------------------------------------------------- GSCD fixture
def _tone_word(rng, f0):
    """A short harmonic 'word' at 16 kHz, different per class (f0) and per file (jitter)."""
    n = int(SR * rng.uniform(0.4, 0.9))
    t = np.arange(n) / SR
    f = f0 * rng.uniform(0.97, 1.03)
    y = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)) * np.hanning(n)
    return (0.3 * y / np.abs(y).max() + 0.003 * rng.standard_normal(n)).astype(np.float32)


def _make_gscd(root: Path, words=KEYWORDS + ["bed", "marvin"], per_word=4) -> dict:
    rng = np.random.default_rng(123)
    val, test = [], []
    for w_i, w in enumerate(words):
        (root / w).mkdir(parents=True)
        for k in range(per_word):
            rel = f"{w}/{k:08x}_nohash_0.wav"
            sf.write(root / rel, _tone_word(rng, 120 + 25 * w_i), SR)
            (val if k == 1 else test if k == 2 else []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    bg = root / "_background_noise_"
    bg.mkdir()
    sf.write(bg / "white_noise.wav", (0.3 * rng.standard_normal(5 * SR)).astype(np.float32), SR)
    t = np.arange(4 * SR) / SR
    sf.write(bg / "hum.wav", (0.2 * np.sin(2 * np.pi * 60 * t)).astype(np.float32), SR)
    (bg / "README.md").write_text("not audio")
    (root / "yes" / "corrupt_nohash_0.wav").write_bytes(b"RIFF....WAVEfmt this is not audio")
    return dict(val=set(val), test=set(test), words=words, per_word=per_word)


@pytest.fixture(scope="module")
def gscd(tmp_path_factory):
    base = tmp_path_factory.mktemp("gscd")
    layout = _make_gscd(base / "speech_commands_v0.02")
    cache = base / "cache"
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable WAV"):
        data = load_kws("gscd", root=base / "speech_commands_v0.02", seed=3, cache_dir=cache, progress=False)
    return data, layout, base


def test_gscd_class_mapping(gscd):
    data, layout, _ = gscd
    assert data.classes == GSCD_CLASSES
    assert GSCD_CLASSES[10:] == ["silence", "unknown"]
    assert json.loads(json.dumps(data.info))["sizes"]["val"] == len(data.val)
    for ds in (data.train, data.val, data.test):
        for src, lab in zip(ds.meta["source"], ds.labels.tolist()):
            if src.startswith("silence:"):
                assert GSCD_CLASSES[lab] == "silence"
            else:
                word = src.split("/")[0]
                assert GSCD_CLASSES[lab] == (word if word in KEYWORDS else "unknown")


def test_gscd_split_membership_and_silence_ratio(gscd):
    data, layout, _ = gscd
    words = [s for s in data.val.meta["source"] if not s.startswith("silence:")]
    assert set(words) == layout["val"]
    words = [s for s in data.test.meta["source"] if not s.startswith("silence:")]
    assert set(words) == layout["test"]
    train = {s for s in data.train.meta["source"] if not s.startswith("silence:")}
    assert len(train) == len(layout["words"]) * (layout["per_word"] - 2)
    assert not train & (layout["val"] | layout["test"])
    assert "yes/corrupt_nohash_0.wav" not in train and data.info["skipped_files"] == 1
    # silence = ceil(10 % of the keyword files listed); train 21 (the corrupt one counts), val 10
    assert data.info["class_counts"]["train"]["silence"] == math.ceil(2.1)
    assert data.info["class_counts"]["val"]["silence"] == 1
    assert data.info["class_counts"]["train"]["unknown"] == 4  # bed + marvin, all kept by default
    sil = [s for s in data.val.meta["source"] if s.startswith("silence:")]
    assert all(s.split(":")[1].split("@")[0] in ("white_noise.wav", "hum.wav") for s in sil)


def test_gscd_features_and_normalization(gscd):
    data, _, _ = gscd
    x, y = data.val[0]
    assert x.shape == (67, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    xs, ys = data.test.tensors()
    assert xs.shape == (len(data.test), 67, 40)
    std = xs.std(dim=1, unbiased=False)
    assert torch.allclose(std[std > 0.5], torch.ones_like(std[std > 0.5]), atol=1e-2)
    assert float((std > 0.5).float().mean()) > 0.95
    assert torch.allclose(xs.mean(dim=1), torch.zeros(len(xs), 40), atol=1e-3)
    assert torch.allclose(data.test[2][0], xs[2], atol=1e-5)  # item path == batched path


def test_gscd_augmentation_train_only_and_seeded(gscd):
    data, _, _ = gscd
    assert data.val.augment is None and data.test.augment is None
    assert torch.equal(data.val[(0, 0)][0], data.val[(0, 5)][0])
    a0, a0b, a1 = data.train[(0, 0, 7)][0], data.train[(0, 0, 7)][0], data.train[(0, 1, 7)][0]
    assert torch.equal(a0, a0b) and not torch.equal(a0, a1)
    clean = normalize(data.train.logmel[0:1])[0]
    assert not torch.allclose(a0, clean)
    assert data.info["augment_noise_segments"] > 0


def test_gscd_cache_second_run_hits(gscd):
    data, _, base = gscd
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        again = load_kws("gscd", root=base / "speech_commands_v0.02", seed=3, cache_dir=base / "cache", progress=False)
    assert data.info["cache"]["hit"] == {"train": False, "val": False, "test": False}
    assert again.info["cache"]["hit"] == {"train": True, "val": True, "test": True}
    assert torch.equal(again.train.logmel, data.train.logmel)
    assert again.train.meta["source"] == data.train.meta["source"]


def test_gscd_subsample_and_unknown_fraction(gscd):
    _, _, base = gscd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = load_kws("gscd", root=base / "speech_commands_v0.02", seed=3, n_train=10, cache_dir=None,
                     use_cache=False, progress=False, augment=False, unknown_fraction=0.1)
    # n_train counts the files drawn; an unreadable one among them is dropped, not replaced
    assert len(d.train) + d.info["skipped_files"] == 10 and d.train.augment is None
    assert d.info["class_counts"]["val"]["unknown"] == 1  # ceil(0.1 x 10 keyword clips)


def test_gscd_official_test_set(tmp_path, gscd):
    _, _, base = gscd
    troot = tmp_path / "speech_commands_test_set_v0.02"
    rng = np.random.default_rng(0)
    for i, folder in enumerate(KEYWORDS + ["_silence_", "_unknown_"]):
        (troot / folder).mkdir(parents=True)
        sf.write(troot / folder / "a_nohash_0.wav", _tone_word(rng, 100 + 20 * i), SR)
    with pytest.warns(RuntimeWarning, match="skipped 1"):  # the corrupt training file again
        d = load_kws("gscd", root=base / "speech_commands_v0.02", test_root=troot, cache_dir=tmp_path / "c",
                     progress=False, augment=False)
    assert d.info["test_root"] == str(troot)
    assert len(d.test) == 12 and d.test.labels.tolist() == list(range(12))


def test_bad_layouts_name_the_expected_layout(tmp_path, monkeypatch):
    with pytest.raises(DataLayoutError, match="validation_list.txt"):
        load_kws("gscd", root=tmp_path / "nowhere")
    (tmp_path / "half" / "yes").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match=r"lacks .*testing_list\.txt.*no/") as e:
        load_kws("gscd", root=tmp_path / "half")
    assert "_background_noise_" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match=r"\{digit\}_\{speaker\}_\{take\}\.wav"):
        load_kws("fsdd", root=tmp_path / "empty")
    monkeypatch.delenv("SPIKENOISE_GSCD", raising=False)
    with pytest.raises(ValueError, match=r"needs root=.*SPIKENOISE_GSCD"):
        load_kws("gscd")
    with pytest.raises(ValueError, match="unknown data set"):
        load_kws("timit")
    with pytest.raises(TypeError, match="unexpected option"):
        load_kws("fsdd", root=tmp_path / "empty", test_root="x")


# -------------------------------------------------------------------------------------- FSDD
@pytest.fixture(scope="module")
def fsdd_root():
    root = _fsdd_root()
    if not (root / "recordings").is_dir():
        pytest.skip(f"FSDD not found at {root} (set SPIKENOISE_FSDD)")
    return root


def test_fsdd_conventional_split(fsdd_root, tmp_path):
    d = load_kws("fsdd", root=fsdd_root, n_train=300, cache_dir=tmp_path, progress=False)
    assert d.classes == FSDD_CLASSES and len(d.classes) == 10
    assert d.info["split_sizes_full"] == {"train": 2400, "val": 300, "test": 300}
    assert len(d.train) == 300 and len(d.test) == 300
    take = lambda s: int(s[:-4].split("_")[2])  # noqa: E731
    assert all(take(s) <= 4 for s in d.test.meta["source"])
    assert all(5 <= take(s) <= 9 for s in d.val.meta["source"])
    assert all(take(s) >= 10 for s in d.train.meta["source"])
    for ds in (d.train, d.test):
        assert [int(s[0]) for s in ds.meta["source"]] == ds.labels.tolist()
    assert d.test.class_counts() == dict.fromkeys(FSDD_CLASSES, 30)
    x, y = d.test[0]
    assert x.shape == (67, 40)
    # 8 kHz audio resampled to 16 kHz carries (almost) nothing above 4 kHz: at their loudest frame
    # the top Mel bands (centres > 4.3 kHz) stay far below the speech bands (log units)
    peak = d.test.logmel.float().amax(dim=1)  # [N, 40]
    assert float(peak[:, :25].mean() - peak[:, -8:].mean()) > 6.0


def test_fsdd_speaker_split(fsdd_root, tmp_path):
    d = load_kws("fsdd", root=fsdd_root, split="speaker", n_train=200, n_val=50, n_test=100,
                 cache_dir=tmp_path, progress=False)
    assert d.info["speakers"]["test"] == ["theo"] and d.info["speakers"]["val"] == ["jackson"]
    assert not set(d.info["speakers"]["train"]) & {"theo", "jackson"}
    assert d.info["split_sizes_full"] == {"train": 2000, "val": 500, "test": 500}
    assert all("_theo_" in s for s in d.test.meta["source"])
    with pytest.raises(ValueError, match="not in FSDD"):
        load_kws("fsdd", root=fsdd_root, split="speaker", test_speakers=["nobody"], cache_dir=tmp_path)


# ---------------------------------------------------------------------------------- embedded
needs_espeak = pytest.mark.skipif(not _espeak.available(), reason="espeakng-loader not installed")
SMALL = EmbeddedConfig(n_speakers=10, takes=1, noise_bank_size=20)  # 350 utterances: fast, same code


@needs_espeak
def test_embedded_deterministic_per_seed(tmp_path):
    kw = dict(n_train=48, n_val=24, n_test=24, progress=False, embedded_config=SMALL)
    a = load_kws("embedded", seed=5, use_cache=False, **kw)
    b = load_kws("embedded", seed=5, use_cache=False, **kw)
    c = load_kws("embedded", seed=6, use_cache=False, **kw)
    for s in ("train", "val", "test"):
        assert torch.equal(getattr(a, s).logmel, getattr(b, s).logmel)
        assert torch.equal(getattr(a, s).labels, getattr(b, s).labels)
    assert not torch.equal(a.train.logmel, c.train.logmel)
    assert torch.equal(a.train[(3, 2, 1)][0], b.train[(3, 2, 1)][0])  # augmentation too


@needs_espeak
def test_embedded_default_speaker_pool_is_speakable():
    from spikenoise.data.embedded import speaker_pool

    pool = speaker_pool()
    assert [sum(s["split"] == k for s in pool) for k in range(3)] == [42, 9, 9]
    assert len({s["voice"] for s in pool}) == 60
    waves, sr = _espeak.synthesize([dict(text="go", voice=s["voice"], seed=1) for s in pool])
    assert sr == 22050 and all(0.1 < len(w) / sr < 1.5 for w in waves)  # every voice exists


@needs_espeak
def test_embedded_task_structure_and_cache(tmp_path):
    kw = dict(n_train=240, n_val=60, n_test=60, progress=False, cache_dir=tmp_path,
              embedded_config=EmbeddedConfig(n_speakers=20, takes=1, noise_bank_size=20))
    d = load_kws("embedded", seed=0, **kw)
    assert d.classes == GSCD_CLASSES and d.info["cache"]["hit"] is False
    assert set(d.info["class_counts"]["train"].values()) == {20}  # balanced 12 classes
    assert d.info["speakers_per_split"] == {"train": 14, "val": 3, "test": 3}
    spk = {s: set(getattr(d, s).meta["speaker"].tolist()) - {-1} for s in ("train", "val", "test")}
    assert not spk["train"] & spk["test"] and not spk["train"] & spk["val"]  # held-out speakers
    words, labels = d.train.meta["word"], d.train.labels.tolist()
    for w, lab in zip(words, labels):
        cls = GSCD_CLASSES[lab]
        if cls == "silence":
            assert w == ""
        elif cls == "unknown":
            assert w not in KEYWORDS and w
        else:
            assert w == cls
    snr = d.train.meta["snr_db"]
    snr = snr[~torch.isnan(snr)]
    assert float(snr.min()) >= -5 and float(snr.max()) <= 20 and float(snr.std()) > 3
    x, y = d.test[0]
    assert x.shape == (67, 40) and x.dtype == torch.float32
    json.loads(json.dumps(d.info))  # info goes into result files as JSON
    again = load_kws("embedded", seed=0, **kw)
    assert again.info["cache"]["hit"] is True
    assert torch.equal(again.test.logmel, d.test.logmel)
    # speech and silence must differ: keyword clips have more spectro-temporal contrast
    raw = d.train.logmel.float()
    contrast = raw.std(dim=1).mean(dim=1)
    sil = d.train.labels == GSCD_CLASSES.index("silence")
    assert float(contrast[~sil].mean()) > float(contrast[sil].mean()) + 0.5


# ----------------------------------------------------------------------------------- loaders
def _toy_data(n=40):
    from spikenoise.data import KWSData, KWSDataset

    g = torch.Generator().manual_seed(0)
    lm = (torch.randn(n, 67, 40, generator=g) - 5).to(torch.float16)
    lab = torch.arange(n) % 12
    bank = (torch.randn(3, 67, 40, generator=g) - 3).to(torch.float16)
    tr = KWSDataset(lm, lab, GSCD_CLASSES, augment=AugmentConfig(), noise_bank=bank, seed=1)
    te = KWSDataset(lm[:10], lab[:10], GSCD_CLASSES)
    return KWSData(tr, te, te, GSCD_CLASSES, {})


def test_make_loaders_seeded_epochs_and_workers():
    data = _toy_data()
    tr, va, te = make_loaders(data, batch_size=16, seed=4)
    e0 = [(x.clone(), y.clone()) for x, y in tr]
    e1 = [(x.clone(), y.clone()) for x, y in tr]
    x, y = e0[0]
    assert x.shape == (16, 67, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sorted(torch.cat([b[1] for b in e0]).tolist()) == sorted(data.train.labels.tolist())
    assert not torch.equal(e0[0][1], e1[0][1])  # reshuffled
    tr2, _, _ = make_loaders(data, batch_size=16, seed=4, num_workers=1)
    f0 = [x for x, _ in tr2]
    assert all(torch.equal(a[0], b) for a, b in zip(e0, f0))  # same stream with a worker
    tr3, _, _ = make_loaders(data, batch_size=16, seed=5)
    assert not torch.equal(next(iter(tr3))[0], e0[0][0])
    vb = [x for x, _ in va]
    assert torch.equal(vb[0], torch.stack([data.val[i][0] for i in range(10)]))
