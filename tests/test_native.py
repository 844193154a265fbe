"""The native-kernel loader: build, cache, modes, and the counter-based stream."""
import ctypes
import os

import numpy as np
import pytest
import torch

from spikenoise import native


def _mix64(z: int) -> int:
    m = 2 ** 64 - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKENOISE_CACHE", str(tmp_path))
    monkeypatch.setenv("SPIKENOISE_NATIVE", "auto")
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_errors", {})
    return tmp_path


def test_stream_words_match_splitmix64_written_in_python(cache):
    lib = native.load("selftest")
    if lib is None:
        pytest.skip(f"no native build here: {native.build_error('selftest')}")
    key, n = 0xDEADBEEF12345678, 9
    out = np.zeros(n, dtype=np.uint64)
    lib.sn_words(ctypes.c_uint64(key), ctypes.c_int64(n), out.ctypes.data_as(ctypes.c_void_p))
    want = [_mix64((key + (k + 1) * 0x9E3779B97F4A7C15) & (2 ** 64 - 1)) for k in range(n)]
    assert out.tolist() == want
    # built once into the cache folder, keyed by the source hash
    assert len(list((cache / "native").glob("selftest-*.so"))) == 1


def test_mode_zero_never_builds_and_bad_mode_is_named(cache, monkeypatch):
    monkeypatch.setenv("SPIKENOISE_NATIVE", "0")
    assert native.load("selftest") is None
    assert not (cache / "native").exists()
    monkeypatch.setenv("SPIKENOISE_NATIVE", "fast")
    with pytest.raises(ValueError, match="SPIKENOISE_NATIVE.*'fast'"):
        native.load("selftest")


def test_missing_compiler_warns_under_auto_and_raises_under_one(cache, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    with pytest.warns(RuntimeWarning, match="no-such-compiler-xyz"):
        assert native.load("selftest") is None
    assert not native.available("selftest")
    monkeypatch.setenv("SPIKENOISE_NATIVE", "1")
    with pytest.raises(RuntimeError, match="SPIKENOISE_NATIVE=1.*selftest"):
        native.load("selftest")


def test_unknown_kernel_and_non_contiguous_tensor_are_named(cache):
    with pytest.raises(ValueError, match="no native kernel named 'nope'"):
        native.load("nope")
    with pytest.raises(ValueError, match="contiguous CPU"):
        native.ptr(torch.zeros(4, 4).t())


def test_keys_follow_torch_seed():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = [native.key_from(g1) for _ in range(3)]
    assert a == [native.key_from(g2) for _ in range(3)]
    assert len(set(a)) == 3 and all(0 <= k < 2 ** 64 for k in a)
