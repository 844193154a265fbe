"""Measure one error-agnostic training on the embedded data (issue 13 operating point).

    python scripts/measure_training.py MODEL [key=value ...]

keys: preset (embedded preset, default tiny), ntrain/nval/ntest, hidden (e.g. 64,64), channels,
epochs (8), bs (32), lr (1e-3), wlr (3e-2), seed (0), threads (1), m_<kw>=<json> (model kwargs,
e.g. m_gamma=10), save=PATH (state dict); SRNN initialisation levers (issue 13 item 2): gate_bias=B
(b_z of every layer's W = B, of U = 0), fc_scale=K (readout scale x K), spike_scale=K (scale x K on
every synapse receiving spikes), current_bias=B (b_i of W += B in layers >= 2: starts fewer neurons
silent). Prints per-epoch train/val accuracy and seconds, the
final test accuracy, training clips/s (training clips x epochs / wall, validation included) and
clean evaluation clips/s.
"""
import json, sys, time
import torch

kv = dict(a.split("=", 1) for a in sys.argv[2:])
name = sys.argv[1]
torch.set_num_threads(int(kv.get("threads", 1)))
from spikenoise.data import load_kws, make_loaders
from spikenoise.models import build_model
from spikenoise.train import fit, derive_seed
from spikenoise.evaluate import accuracy

def ints(s):
    return [int(t) for t in s.split(",")]

preset = kv.get("preset", "tiny")
sizes = [int(kv[k]) if k in kv else None for k in ("ntrain", "nval", "ntest")]
d = load_kws("embedded", preset=preset, seed=0, n_train=sizes[0], n_val=sizes[1], n_test=sizes[2], progress=False)
seed = int(kv.get("seed", 0))
tl, vl, te = make_loaders(d, batch_size=int(kv.get("bs", 32)), seed=seed)
mk = {}
if "hidden" in kv: mk["hidden"] = ints(kv["hidden"])
if "channels" in kv: mk["channels"] = ints(kv["channels"])
for k in list(kv):
    if k.startswith("m_"):
        mk[k[2:]] = json.loads(kv[k])
torch.manual_seed(derive_seed(seed, name, "init"))
m = build_model(name, n_classes=len(d.classes), **mk)
with torch.no_grad():
    if "gate_bias" in kv:
        for layer in m.layers:
            layer.W.bias[:layer.n_hidden] = float(kv["gate_bias"])
            layer.U.bias[:layer.n_hidden] = 0.0
    if "current_bias" in kv:
        for layer in m.layers[1:]:
            layer.W.bias[layer.n_hidden:] += float(kv["current_bias"])
    if "fc_scale" in kv:
        m.fc.scale.mul_(float(kv["fc_scale"]))
    if "spike_scale" in kv:
        for k, layer in enumerate(m.layers):
            for syn in ([layer.W] if k else []) + [layer.U]:
                syn.scale.mul_(float(kv["spike_scale"]))
        m.fc.scale.mul_(float(kv["spike_scale"]))
t0 = time.perf_counter()
hist = fit(m, tl, vl, epochs=int(kv.get("epochs", 8)), lr=float(kv.get("lr", 1e-3)),
           weight_lr=float(kv.get("wlr", 3e-2)), seed=derive_seed(seed, name, "agnostic"), progress=False,
           log=lambda r: print(f"  ep {r['epoch']:2d} train {r['train_acc']*100:5.1f} loss {r['train_loss']:.3f} "
                               f"val {r['val_acc']*100:5.1f} {r['seconds']:.1f}s", flush=True))
t_train = time.perf_counter() - t0
m.eval()
correct = n = 0
counts = {}
t0 = time.perf_counter()
with torch.no_grad():
    for x, y in te:
        correct += int((m(x).argmax(-1) == y).sum()); n += len(y)
        for k, c in getattr(m, "spike_counts", {}).items():
            counts[k] = counts.get(k, 0) + c.sum(0) / x.shape[1]
t_test = time.perf_counter() - t0
for k, c in counts.items():
    r = c / n  # spikes per neuron per timestep
    print(f"  {k}: rate {r.mean():.3f} per step, silent (< 0.005) {(r < 0.005).float().mean():.2f} of neurons")
ntr = len(d.train); ep = len(hist)
print(f"RESULT {name} {kv} test {100*correct/n:.1f}% ({n} clips) val {100*hist[-1]['val_acc']:.1f} "
      f"train {t_train:.0f}s ({ntr*ep/t_train:.0f} clips/s incl. val) eval {n/t_test:.0f} clips/s", flush=True)
if "save" in kv:
    torch.save(m.state_dict(), kv["save"])
