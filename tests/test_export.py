"""nmt_prune.export: each layout round-trips exactly, byte counts are the stored bytes, the int8
codebook is a nearest-centroid quantiser, and an exported pruned run translates as the checkpoint."""

from __future__ import annotations

import pytest
import torch

from nmt_prune import export
from nmt_prune.experiment import run
from nmt_prune.module import NMTModule
from tests.conftest import make_cfg


def _sparse(shape, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g)
    return t * (torch.rand(shape, generator=g) < density)


def _stored_bytes(enc: dict) -> int:
    return sum(v.numel() * v.element_size() for v in enc.values() if isinstance(v, torch.Tensor))


CASES = [
    ((40, 30), 1.0, "dense"),
    ((40, 30), 0.2, "bitmask"),
    ((10, 3000), 0.01, "csr"),
    ((37,), 0.3, "bitmask"),
    ((3, 40000), 0.01, "csr"),
]


@pytest.mark.parametrize(("shape", "density", "layout"), CASES)
def test_each_layout_round_trips_exactly_and_counts_its_bytes(shape, density, layout):
    t = _sparse(shape, density)
    enc = export.encode(t, "fp32")
    assert enc["layout"] == layout
    assert torch.equal(export.decode(enc), t)  # bit-exact, zeros where they were
    assert enc["bytes"] == _stored_bytes(enc)  # the size formula is what is stored
    if len(shape) == 2 and shape[1] > 32767:
        assert enc["col"].dtype == torch.int32


def test_fp16_and_int8_values():
    t = _sparse((64, 50), 0.3, seed=1)
    h = export.decode(export.encode(t, "fp16"))
    assert torch.equal(h, t.half().float())
    enc = export.encode(t, "int8")
    q = export.decode(enc)
    assert torch.equal(q == 0, t == 0)  # the pruned positions stay exactly zero
    assert enc["bytes"] == _stored_bytes(enc) and enc["book"].numel() == export.CODEBOOK
    nz = t[t != 0]
    book = enc["book"][: min(export.CODEBOOK, nz.numel())]
    nearest = book[(nz.unsqueeze(1) - book.unsqueeze(0)).abs().argmin(1)]
    assert torch.allclose(q[t != 0], nearest)  # every value maps to its nearest centroid
    grid = torch.linspace(float(nz.min()), float(nz.max()), export.CODEBOOK)  # a uniform 8-bit grid
    uniform = grid[(nz.unsqueeze(1) - grid.unsqueeze(0)).abs().argmin(1)]
    assert (q[t != 0] - nz).pow(2).mean() < (uniform - nz).pow(2).mean()  # k-means beats it


def test_an_exported_pruned_run_translates_exactly_as_its_checkpoint(tmp_path):
    fast = [
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=6",
        "eval.beam_size=2",
        "prune.retrain.epochs=1",
    ]
    out = run(make_cfg(tmp_path, *fast, "prune.pct=90"))
    assert out["status"] == "ok"
    ck = torch.load(out["checkpoint"], map_location="cpu", weights_only=True)
    for values in export.VALUES:
        torch.save(export.export(ck, values), tmp_path / f"m_{values}.pt")
    orig, new = NMTModule.from_checkpoint(out["checkpoint"]), export.load(tmp_path / "m_fp32.pt")
    state = dict(orig.model.named_parameters())
    assert all(torch.equal(p, state[n]) for n, p in new.model.named_parameters())
    from nmt_prune.translate import translate_lines

    lines = ["the red dog sees a cat", "a small man"]
    assert translate_lines(orig, lines, 2, 8) == translate_lines(new, lines, 2, 8)
    sizes = out["export"]
    assert sizes["fp32"] == sum(e["bytes"] for e in export.export(ck, "fp32")["params"].values())
    assert sizes["fp16"] < sizes["fp32"] < sizes["dense_fp32"]  # (int8: a 1 KB codebook per tensor of a
    # tiny model outweighs its savings; on Multi30k's model it is the smallest, README)
    assert sum(sizes["fp16_by_class"].values()) <= sizes["fp16"]
