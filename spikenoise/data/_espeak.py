"""Offline speech synthesis with libespeak-ng (shipped by the PyPI package ``espeakng-loader``).

Driven through ctypes (no system espeak needed). libespeak-ng keeps state between utterances
(flutter phase, random generator), so an utterance depends on what was spoken before it in the same
process. :func:`synthesize_fresh` therefore runs the whole job list in a new interpreter, which
makes the output a pure function of the job list (checked bit-exact across runs with 1.52.0).

This file is also a script: ``python _espeak.py jobs.json out.npz``. It imports only numpy,
ctypes and espeakng_loader so that it can run without the package on ``sys.path``.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# espeak_PARAMETER ids and constants from speak_lib.h
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1

_state: dict = {}


def available() -> bool:
    """True when ``espeakng_loader`` imports and ships a loadable library."""
    try:
        import espeakng_loader

        ctypes.CDLL(espeakng_loader.get_library_path())
        espeakng_loader.get_data_path()
        return True
    except Exception:
        return False


def _lib():
    if "lib" in _state:
        return _state["lib"]
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.restype = ctypes.c_char_p
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if sr <= 0:
        raise RuntimeError("libespeak-ng failed to initialize (espeak_Initialize returned %d)" % sr)
    chunks: list[np.ndarray] = []
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def _cb(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    cb = cb_type(_cb)
    lib.espeak_SetSynthCallback(cb)
    _state.update(lib=lib, sr=sr, chunks=chunks, cb=cb, libc=ctypes.CDLL(None))  # keep cb alive
    return lib


def version() -> str:
    lib = _lib()
    return lib.espeak_Info(None).decode()


def synthesize(jobs: list[dict]) -> tuple[list[np.ndarray], int]:
    """Speak each job ``{"text", "voice", "rate", "pitch", "range", "seed"}`` in this process.

    Returns int16 waveforms at the library rate (22050 Hz) and that rate. ``voice`` is an espeak
    voice name with optional variant (``"en-us+f3"``); rate in words/min, pitch and range 0..99.
    """
    lib = _lib()
    chunks = _state["chunks"]
    out = []
    for j in jobs:
        if lib.espeak_SetVoiceByName(j["voice"].encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {j['voice']!r}")
        lib.espeak_SetParameter(_RATE, int(j.get("rate", 175)), 0)
        lib.espeak_SetParameter(_PITCH, int(j.get("pitch", 50)), 0)
        lib.espeak_SetParameter(_RANGE, int(j.get("range", 50)), 0)
        lib.espeak_SetParameter(_VOLUME, 100, 0)
        seed = int(j.get("seed", 0))
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        _state["libc"].srand(ctypes.c_uint(seed))
        chunks.clear()
        text = j["text"].encode()
        rc = lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if rc != 0:
            raise RuntimeError(f"espeak_Synth failed with code {rc} for {j!r}")
        lib.espeak_Synchronize()
        out.append(np.concatenate(chunks) if chunks else np.zeros(0, np.int16))
    return out, int(_state["sr"])


def synthesize_fresh(jobs: list[dict], timeout: float = 600.0) -> tuple[list[np.ndarray], int, str]:
    """:func:`synthesize` in a new interpreter: ``(waves int16, sample rate, espeak version)``."""
    with tempfile.TemporaryDirectory(prefix="spikenoise-espeak-") as d:
        jpath, opath = Path(d) / "jobs.json", Path(d) / "out.npz"
        jpath.write_text(json.dumps(jobs))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        r = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(jpath), str(opath)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
        if r.returncode != 0:
            raise RuntimeError(f"espeak-ng synthesis subprocess failed:\n{r.stderr[-2000:]}")
        z = np.load(opath, allow_pickle=False)  # plain arrays only: loading never runs code
        flat, offs = z["flat"], z["offsets"]
        waves = [flat[offs[i] : offs[i + 1]].copy() for i in range(len(offs) - 1)]
        return waves, int(z["sr"]), str(z["version"])


def _main(argv: list[str]) -> int:
    jobs = json.loads(Path(argv[0]).read_text())
    waves, sr = synthesize(jobs)
    offsets = np.cumsum([0] + [len(w) for w in waves]).astype(np.int64)
    flat = np.concatenate(waves) if waves else np.zeros(0, np.int16)
    np.savez(argv[1], flat=flat, offsets=offsets, sr=sr, version=version())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
