"""The synapse core's public options: draws shared by the batch, pinned draws, and the error-model
interface that tiled layers use instead of asking which model they hold."""
import io
from typing import Any

import pytest
import torch
import torch.nn as nn

import spikenoise as sn
from spikenoise.noise.base import ErrorModel
from spikenoise.synapse import TiledLinear, programmed, tile


def test_draws_batch_shares_one_static_draw_and_survives_a_checkpoint():
    torch.manual_seed(0)
    x = torch.ones(6, 8)  # identical rows: outputs differ only by their draws
    row = sn.NoisyLinear(8, 5, error_model=sn.MultiLevelNVM.noise_level(3), errors="static", reads="once")
    batch = sn.NoisyLinear(8, 5, error_model=sn.MultiLevelNVM.noise_level(3), errors="static", reads="once",
                           draws="batch")
    with torch.no_grad():
        batch.weight.copy_(row.weight)
        batch.bias.copy_(row.bias)
    y_row, y_batch = row(x), batch(x)
    assert not torch.allclose(y_row, y_row[:1].expand_as(y_row))  # P(all 6 rows equal) is negligible
    assert torch.equal(y_batch, y_batch[:1].expand_as(y_batch))
    assert batch.draw.shape == (1, 5, 8) and row.draw.shape == (6, 5, 8)
    assert "shared by the whole batch" in batch.when_drawn()
    buf = io.BytesIO()
    torch.save(batch.state_dict(), buf)
    other = sn.NoisyLinear(8, 5, errors="static", reads="once")
    other.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    assert other.draws == "batch"
    with pytest.raises(ValueError, match="draws"):
        sn.configure(nn.Sequential(other), draws="chip")


def test_pin_and_release():
    torch.manual_seed(1)
    layer = sn.NoisyLinear(4, 3, error_model=sn.MultiLevelNVM.noise_level(3), errors="static", reads="once")
    x = torch.ones(5, 4)
    chip = layer.sample_draw(layer.quantized_weight(), 1)
    layer.pin(chip)
    first = layer(x)
    sn.new_inference(layer)  # a new inference keeps the pinned chip
    assert torch.equal(layer(x), first) and torch.equal(first, first[:1].expand_as(first))
    assert layer.pinned and layer.draw is chip
    layer.release()
    assert not layer.pinned and layer.draw is None
    assert not torch.equal(layer(x), first)
    dynamic = sn.NoisyLinear(4, 3, error_model=sn.MultiLevelNVM.noise_level(3), errors="dynamic", reads="spike")
    with pytest.raises(ValueError, match="static errors"):
        dynamic.pin(chip)


class Offset(ErrorModel):
    """A minimal new device model: every read adds ``delta`` (no other method overridden)."""

    kind = "test_offset"

    def __init__(self, delta: float = 0.0):
        self.delta = float(delta)

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        return w.detach().clamp(-1, 1)

    def read(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return stored.unsqueeze(0).expand(n, *stored.shape) + self.delta

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "delta": self.delta}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Offset":
        return cls(cfg["delta"])


def test_a_new_error_model_works_on_arrays_chips_and_checkpoints():
    torch.manual_seed(2)
    em = Offset(0.25)
    net = tile(nn.Sequential(nn.Linear(6, 4)), em, errors="static", array=(4, 4), adc_bits=None, input_bits=None,
               input_range=1.0)
    layer = net[0]
    assert isinstance(layer, TiledLinear)
    x = torch.rand(3, 6)
    w = em.quantize(layer.weight) + 0.25
    # ideal cells (G_min = 0) split the read weight; with an ideal ADC the array computes x @ w.T
    expected = layer.scale * (x @ w.T) + layer.bias
    assert torch.allclose(net(x), expected, atol=1e-5)
    with programmed(net, seed=0):
        assert torch.allclose(net(x), expected, atol=1e-5)
    copy = tile(nn.Sequential(nn.Linear(6, 4)), array=(4, 4), adc_bits=None, input_bits=None, input_range=1.0)
    copy.load_state_dict(net.state_dict())
    assert copy[0].error_model == em and torch.allclose(copy(x), expected, atol=1e-5)


def test_draws_batch_under_per_spike_reads_says_it_does_not_apply():
    torch.manual_seed(0)
    layer = sn.NoisyLinear(8, 5, error_model=sn.MultiLevelNVM.noise_level(3), errors="dynamic", reads="spike",
                           draws="batch")
    assert "draws='batch' does not apply" in layer.when_drawn()
    x = torch.ones(64, 8)  # identical spike rows: per-spike reads still differ row by row
    y = layer(x)
    assert not torch.allclose(y, y[:1].expand_as(y))
    layer.set_errors(draws="row")
    assert "does not apply" not in layer.when_drawn()
