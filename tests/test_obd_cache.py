"""OBD on a sample of the training set: the weights it cannot see, and its cached Hessian."""

from __future__ import annotations

import torch

from nmt_prune.data.text import PAD_ID
from nmt_prune.pruner import Pruner
from tests.conftest import tiny_module


def _pruner(tmp_path, sentences=5, amount=0.1):
    p = Pruner("obd", "blind", amount, settings={"sentences": sentences})
    p.cache_dir = tmp_path / "saliency"
    return p


def test_zero_curvature_counts_exactly_the_embedding_rows_the_sample_never_sees(toy_dm, tmp_path):
    """Reference: the source words that occur in the sampled sentences (read from the sample
    itself). Every other row of src_embed gets no gradient, so h = 0 there and nowhere else."""
    model = tiny_module(toy_dm).model
    p = _pruner(tmp_path)
    p.compute_masks(model, toy_dm)
    seen = {int(t) for b in toy_dm.sample_examples(5, p.seed) for t in b["src"].flatten()} - {PAD_ID}
    rows, emb = model.src_embed.weight.shape
    assert p.data_used["zero_curvature_by_param"]["src_embed.weight"] == (rows - len(seen)) * emb
    assert p.data_used["zero_curvature"] >= (rows - len(seen)) * emb

    assert len(seen) < rows - 4  # the sample misses words (4: the special symbols)

    everything = _pruner(tmp_path, sentences=toy_dm.train_size())
    everything.compute_masks(model, toy_dm)
    in_train = {t for s in toy_dm.splits["train"].src for t in s}
    assert everything.data_used["sentences"] == toy_dm.train_size()
    zero_all = everything.data_used["zero_curvature_by_param"].get("src_embed.weight", 0)
    assert zero_all == (rows - len(in_train - {PAD_ID})) * emb < (rows - len(seen)) * emb


def test_the_hessian_is_read_back_only_for_the_same_weights_and_data(toy_dm, tmp_path):
    model = tiny_module(toy_dm).model
    first = _pruner(tmp_path)
    m1 = first.compute_masks(model, toy_dm)
    again = _pruner(tmp_path)
    m2 = again.compute_masks(model, toy_dm)
    assert (first.data_used["hessian_cached"], again.data_used["hessian_cached"]) == (False, True)
    assert all(torch.equal(m1.masks[n], m2.masks[n]) for n in m1.masks)

    with torch.no_grad():
        model.generator.weight[0, 0] += 1.0  # other weights: another entry
    moved = _pruner(tmp_path)
    moved.compute_masks(model, toy_dm)
    other_data = _pruner(tmp_path, sentences=6)
    other_data.compute_masks(model, toy_dm)
    assert not moved.data_used["hessian_cached"] and not other_data.data_used["hessian_cached"]
    assert len(list((tmp_path / "saliency").glob("obd-hessian-*.pt"))) == 3


def test_a_damaged_cache_entry_is_computed_again_not_trusted(toy_dm, tmp_path):
    model = tiny_module(toy_dm).model
    first = _pruner(tmp_path)
    m1 = first.compute_masks(model, toy_dm)
    (entry,) = (tmp_path / "saliency").glob("obd-hessian-*.pt")
    entry.write_bytes(entry.read_bytes()[:100])  # a truncated file (a full disk, a killed copy)
    again = _pruner(tmp_path)
    m2 = again.compute_masks(model, toy_dm)
    assert not again.data_used["hessian_cached"]
    assert all(torch.equal(m1.masks[n], m2.masks[n]) for n in m1.masks)
    assert _pruner(tmp_path).compute_masks(model, toy_dm) and torch.load(entry, weights_only=True)
