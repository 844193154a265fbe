"""Clean accuracy per speaker of trained compare networks on the embedded data (issue 13 item 2).

    python scripts/per_speaker.py --width half rnn=runs/op/rnn_s0.pt srnn=runs/op/srnn_s0.pt
    python scripts/per_speaker.py rnn=runs/compare/checkpoints/rnn_agnostic_s0.pt ...

Each ``NAME=PATH`` is a state dict written by ``scripts/operating_point.py --save-dir`` or a
training checkpoint of ``spikenoise compare`` (``RUN/checkpoints/NAME_agnostic_sS.pt``), the
network built as ``compare`` builds it (``--width`` as there). Prints, for the validation and the
test split, every model's accuracy and then one row per speaker: clips, each model's accuracy and
the speaker's voice (accent + espeak-ng variant; "klatt*" variants use the Klatt synthesizer),
pitch, rate and vocal-tract-length factor. Speaker -1 holds the "silence" clips (no speaker).
Last, per split, each model's accuracy on the Klatt voices and on the others.
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="NAME=PATH (NAME: a compare model, e.g. rnn, srnn)")
    p.add_argument("--width", default="half")
    p.add_argument("--sizes", default="4000,500,500", help="train,val,test clips (as the networks were trained)")
    p.add_argument("--embedded-preset", default="quick")
    a = p.parse_args()
    torch.set_num_threads(1)

    from spikenoise.data.embedded import speaker_pool
    from spikenoise.models import WIDTHS
    from spikenoise.safeload import safe_torch_load
    from spikenoise.studies.compare import protocol

    cfg = dict(data="embedded", root=None, embedded_preset=a.embedded_preset,
               sizes=[int(t) for t in a.sizes.split(",")], data_seed=0, progress=False,
               model_kwargs=WIDTHS[a.width])
    data = protocol.load_data(cfg)
    pool = {s["id"]: s for s in speaker_pool()}
    nets = {}
    for spec in a.models:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"expected NAME=PATH, got {spec!r}")
        net = protocol.new_model(cfg, len(data.classes), name, 0, torch.device("cpu"))
        state = safe_torch_load(path)
        net.load_state_dict(state["model"] if "model" in state and "format" in state else state)
        nets[spec] = net.eval()
    for split in ("val", "test"):
        ds = getattr(data, split)
        spk = torch.as_tensor(ds.meta["speaker"])
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.as_tensor(ds.labels)
        with torch.no_grad():
            hit = {k: (net(x).argmax(-1) == y).float() for k, net in nets.items()}
        print(split, "  ".join(f"{k.split('=')[0]} {100 * h.mean():.1f}" for k, h in hit.items()))
        for s in sorted(set(spk.tolist())):
            sel = spk == s
            who = pool.get(s)
            desc = ("silence" if who is None else
                    f"{who['voice']:28s} pitch {who['pitch']:4.0f} rate {who['rate']:4.0f} vtl {who['vtl']:.2f}")
            print(f"  speaker {s:2d} {int(sel.sum()):3d} clips  " +
                  "  ".join(f"{k.split('=')[0]} {100 * h[sel].mean():5.1f}" for k, h in hit.items()) + f"  {desc}")
        klatt = torch.tensor([s in pool and "+klatt" in pool[s]["voice"] for s in spk.tolist()])
        for label, sel in (("klatt voices", klatt), ("other voices", ~klatt)):
            if sel.any():
                print(f"  {label}: {int(sel.sum())} clips  " +
                      "  ".join(f"{k.split('=')[0]} {100 * h[sel].mean():5.1f}" for k, h in hit.items()))


if __name__ == "__main__":
    main()
