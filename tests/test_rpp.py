"""nmt_prune.rpp (reweighted proximal pruning): the proximal operator against a brute-force
minimisation, the reweighting, the callback's steps inside a real optimiser loop, the pipeline."""

from __future__ import annotations

import pytest
import torch

from nmt_prune.experiment import run
from nmt_prune.rpp import ProximalReweighting, soft_threshold
from tests.conftest import FAST, check_masks_hold, make_cfg


@pytest.mark.parametrize("t", [0.0, 0.05, 0.3])
def test_soft_threshold_is_the_proximal_operator_of_the_l1_term(t):
    """prox_{t|.|}(w) = argmin_z 1/2 (z - w)^2 + t |z|, found here by a dense grid search."""
    w = torch.tensor([-1.0, -0.31, -0.04, 0.0, 0.02, 0.2, 0.9], dtype=torch.float64)
    z = torch.linspace(-1.5, 1.5, 300_001, dtype=torch.float64)
    objective = 0.5 * (z.unsqueeze(0) - w.unsqueeze(1)) ** 2 + t * z.abs().unsqueeze(0)
    brute = z[objective.argmin(1)]
    torch.testing.assert_close(soft_threshold(w, t), brute, atol=2e-5, rtol=0)
    assert torch.all(soft_threshold(w, t)[w.abs() <= t] == 0)  # exactly zero, not nearly


class _Lit:
    """What the callback reads of a LightningModule and a Trainer."""

    def __init__(self, model, opt):
        self.model, self.optimizers = model, [opt]


def test_each_optimizer_step_is_followed_by_the_reweighted_proximal_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    w = dict(model.named_parameters())
    names, lam, eps, refresh = ["0.weight", "1.weight"], 0.05, 0.01, 3
    seen = {}  # the weights as Adam leaves them: a hook registered before the callback's
    opt.register_step_post_hook(lambda *_: seen.update({n: p.detach().clone() for n, p in w.items()}))
    cb = ProximalReweighting(names, lam, eps, refresh)
    lit = _Lit(model, opt)
    cb.on_fit_start(lit, lit)
    alpha = {n: 1.0 / (w[n].detach().abs() + eps) for n in names}
    x, y = torch.randn(32, 6), torch.randn(32, 3)
    for step in range(8):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        for n in names:
            t = 0.01 * lam * alpha[n]
            expected = torch.where(seen[n].abs() > t, seen[n] - t * seen[n].sign(), torch.zeros(()))
            torch.testing.assert_close(w[n].detach(), expected, rtol=0, atol=1e-7)
        for n in ("0.bias", "1.bias"):  # not named: Adam's step only
            assert torch.equal(w[n].detach(), seen[n])
        if (step + 1) % refresh == 0:
            alpha = {n: 1.0 / (w[n].detach().abs() + eps) for n in names}
        assert cb.steps == step + 1
        for n in names:
            torch.testing.assert_close(cb.alpha[n], alpha[n])
    assert sum(int((w[n] == 0).sum()) for n in names) > 0  # it did zero some weights
    cb.on_fit_end(lit, lit)
    opt.step()  # the hook is gone: no more thresholding, no more steps counted
    assert cb.steps == 8


def test_an_rpp_phase_runs_in_the_pipeline_before_an_exact_prune(tmp_path):
    out = run(
        make_cfg(
            tmp_path,
            *FAST,
            "prune.pct=70",
            "prune.rpp.epochs=1",
            "prune.rpp.lam=0.05",
            "prune.rpp.refresh=2",
        )
    )
    assert out["status"] == "ok"
    r = out["rpp"]
    assert r["epochs"] == 1 and r["steps"] > 0 and len(r["val_ppl"]) == 1
    assert 0 < r["zero_fraction"] < 0.7  # the phase zeroed weights; the allocation finished the job
    assert out["prune"]["n_pruned"] == round(0.7 * out["prune"]["n_prunable"])
    check_masks_hold(out["checkpoint"], out)


def test_an_l1_phase_is_the_loss_term_and_leaves_no_exact_zeros(tmp_path):
    """penalty=l1, the baseline RPP argues against: lambda sum |w| in the loss shrinks the weights
    (large ones too) but its subgradient steps leave (almost) none exactly zero, so the exact
    count is the allocation's; the same phase with the proximal steps zeroes many."""
    common = (*FAST, "prune.pct=70", "prune.rpp.epochs=1", "prune.rpp.lam=0.05", "prune.rpp.refresh=2")
    l1 = run(make_cfg(tmp_path / "l1", *common, "prune.rpp.penalty=l1"))
    prox = run(make_cfg(tmp_path / "prox", *common))
    assert l1["status"] == prox["status"] == "ok"
    assert l1["rpp"]["penalty"] == "l1" and prox["rpp"]["penalty"] == "proximal"
    assert l1["rpp"]["steps"] == prox["rpp"]["steps"] > 0  # the same phase, another penalty
    assert l1["rpp"]["zero_fraction"] < 1e-3 < prox["rpp"]["zero_fraction"]
    assert l1["rpp"]["l1_norm_ratio"] < 1  # it does shrink the weights
    assert l1["prune"]["n_pruned"] == round(0.7 * l1["prune"]["n_prunable"])
    check_masks_hold(l1["checkpoint"], l1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prune.rpp.epochs=-1"], r"prune.rpp.epochs=-1; must be an integer >= 0"),
        (["prune.rpp.lam=0"], r"prune.rpp.lam=0.0; must be a number > 0"),
        (["prune.rpp.refresh=0"], r"prune.rpp.refresh=0; must be an integer >= 1"),
        (
            ["prune.rpp.epochs=2", "prune.schedule=gradual"],
            r"prune.rpp.epochs=2 needs prune.timing=after_fit",
        ),
        (["prune.rpp.epochs=2", "prune.method=snip"], r"timing=at_init"),
    ],
)
def test_bad_rpp_settings_fail_before_work(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(make_cfg(tmp_path, "prune.pct=80", *overrides))
    assert not (tmp_path / "cache").exists()
