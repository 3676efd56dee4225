"""Allocation: exact counts, ties, equality with torch.nn.utils.prune and with the definitions."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from nmt_prune.allocation import allocate, apportion, class_std, prunable_classes
from nmt_prune.model import Seq2Seq
from nmt_prune.saliency import magnitude, random


def _params(seed=0):
    """Odd sizes, three classes of different scales (so the schemes disagree)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"a.w": (7, 13), "a.v": (5,), "b.w": (11, 3), "c.w": (17, 19), "c.u": (3, 29)}
    scale = {"a": 0.1, "b": 1.0, "c": 3.0}
    params = {n: torch.randn(s, generator=g) * scale[n[0]] for n, s in shapes.items()}
    classes = {"a": ["a.w", "a.v"], "b": ["b.w"], "c": ["c.w", "c.u"]}
    return params, classes


def _n_pruned(masks):
    return sum(int((~m).sum()) for m in masks.values())


@pytest.mark.parametrize("scheme", ["blind", "uniform", "distribution"])
@pytest.mark.parametrize("amount", [0.0, 0.1, 0.333, 0.5, 0.9, 0.999])
def test_exact_count(scheme, amount):
    params, classes = _params()
    n = sum(p.numel() for p in params.values())
    masks = allocate(magnitude(params), classes, amount, scheme, class_std(params, classes))
    assert _n_pruned(masks) == round(amount * n)
    assert all(m.dtype == torch.bool and m.shape == params[k].shape for k, m in masks.items())


def test_blind_equals_torch_global_unstructured():
    params, classes = _params(1)
    modules = {n: nn.Module() for n in params}
    for n, m in modules.items():
        m.weight = nn.Parameter(params[n].clone())
    amount = 0.6
    pairs = [(m, "weight") for m in modules.values()]
    tprune.global_unstructured(pairs, tprune.L1Unstructured, amount=amount)
    ours = allocate(magnitude(params), classes, amount, "blind")
    for n, m in modules.items():
        assert torch.equal(ours[n], m.weight_mask.bool()), n


def test_uniform_equals_per_class_topk():
    params, classes = _params(2)
    amount = 0.7
    masks = allocate(magnitude(params), classes, amount, "uniform")
    sizes = [sum(params[n].numel() for n in ns) for ns in classes.values()]
    for (cls, names), k in zip(classes.items(), apportion(amount, sizes)):
        flat = torch.cat([params[n].abs().reshape(-1) for n in names])
        kept = torch.cat([masks[n].reshape(-1) for n in names])
        assert abs(k - amount * flat.numel()) <= 1  # each class within one weight of x * N_c
        expected = torch.ones_like(kept)
        expected[torch.topk(flat, k, largest=False).indices] = False
        assert torch.equal(kept, expected), cls


def test_distribution_equals_lambda_sigma_definition():
    """Reference: bisection on lambda so that #{|w| < lambda * sigma_c} hits the target count."""
    params, classes = _params(3)
    amount = 0.55
    n = sum(p.numel() for p in params.values())
    target = round(amount * n)
    sigma = {
        c: float(torch.cat([params[x].reshape(-1) for x in ns]).std(correction=0))
        for c, ns in classes.items()
    }

    def count(lam):
        return sum(int((params[x].abs() < lam * sigma[c]).sum()) for c, ns in classes.items() for x in ns)

    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    assert count(hi) == target  # continuous weights: no ties, an exact lambda exists
    ours = allocate(magnitude(params), classes, amount, "distribution", class_std(params, classes))
    for c, ns in classes.items():
        for x in ns:
            assert torch.equal(ours[x], ~(params[x].abs() < hi * sigma[c])), x


def test_schemes_differ_on_unequal_classes():
    params, classes = _params(4)
    s, std = magnitude(params), class_std(params, classes)
    blind, uniform, dist = (allocate(s, classes, 0.5, k, std) for k in ("blind", "uniform", "distribution"))
    frac = {k: 1 - float(m["a.w"].float().mean()) for k, m in (("b", blind), ("u", uniform), ("d", dist))}
    assert frac["b"] > 0.9  # class a has the smallest weights: class-blind prunes it nearly all
    assert abs(frac["u"] - 0.5) < 0.05


def test_ties_pruned_deterministically_earliest_first():
    params = {"x": torch.ones(3, 3), "y": torch.ones(2, 5)}
    classes = {"c": ["x", "y"]}
    m1 = allocate(magnitude(params), classes, 0.5, "blind")
    m2 = allocate(magnitude(params), classes, 0.5, "blind")
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    assert _n_pruned(m1) == round(0.5 * 19)
    assert not m1["x"].any() and int((~m1["y"]).sum()) == 1  # the first 10 in parameter order


def test_random_seeded_and_exact():
    params, classes = _params(5)
    a = allocate(random(params, 7), classes, 0.8, "blind")
    b = allocate(random(params, seed=7), classes, 0.8, "blind")
    c = allocate(random(params, 8), classes, 0.8, "blind")
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


def test_apportion_sums_exactly():
    for amount in (0.1, 0.5, 0.77, 0.9):
        sizes = [7, 13, 101, 3, 999]
        counts = apportion(amount, sizes)
        assert sum(counts) == round(amount * sum(sizes))
        assert all(abs(k - amount * s) < 1 for k, s in zip(counts, sizes))


def test_prunable_classes_switches_and_errors():
    model = Seq2Seq(20, 30, emb_size=8, hidden_size=8, layers=2)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    classes = model.weight_classes()
    default = prunable_classes(classes, shapes)
    assert len(default) == 8 and all(len(shapes[n]) == 2 for ns in default.values() for n in ns)
    with_b = prunable_classes(classes, shapes, include_biases=True)
    assert "generator.bias" in with_b["softmax"]
    no_emb = prunable_classes(classes, shapes, include_embeddings=False, exclude=["softmax"])
    assert set(no_emb) == set(default) - {"src_embed", "tgt_embed", "softmax"}
    with pytest.raises(ValueError, match=r"softmx.*valid choices.*softmax"):
        prunable_classes(classes, shapes, exclude=["softmx"])


def test_excluded_class_untouched():
    params, classes = _params(6)
    sub = {c: ns for c, ns in classes.items() if c != "b"}
    s = magnitude({n: params[n] for ns in sub.values() for n in ns})
    masks = allocate(s, sub, 0.9, "blind")
    assert "b.w" not in masks
    with pytest.raises(ValueError, match="valid choices"):
        allocate(s, sub, 0.5, "blnd")
