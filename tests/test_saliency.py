"""OBD Hessian-diagonal estimators and SNIP against independent reference computations."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from nmt_prune.allocation import allocate
from nmt_prune.data.datamodule import collate
from nmt_prune.init import init_weights
from nmt_prune.model import Seq2Seq
from nmt_prune.saliency import _eval_mode, hessian_diagonal, magnitude, obd, sentence_loss, snip, taylor


@pytest.fixture(autouse=True, scope="module")
def _float64():
    """References by autograd.functional in float64 keep rounding out; set while this module's
    tests run only (at import it would leak into every test collected before them)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _tiny(seed=0):
    torch.manual_seed(seed)
    m = Seq2Seq(9, 8, emb_size=3, hidden_size=3, layers=1, dropout=0.0).double()
    init_weights(m, "uniform", 0.5)
    return m


def _examples(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ex = []
    for i in range(n):
        s = torch.randint(4, 9, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g).tolist() + [3]
        t = torch.randint(4, 8, (int(torch.randint(2, 4, (1,), generator=g)),), generator=g).tolist()
        ex.append((i, s, t))
    return ex


class _Wrap(torch.nn.Module):
    """forward(batch) = fn(model, batch): lets torch.func.functional_call swap the parameters."""

    def __init__(self, model, fn):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, batch):
        return self.fn(self.model, batch)


def _flat_fn(model, names, fn, batch):
    """fn(model, batch) as a function of one flat vector over ``names`` (the rest fixed)."""
    params = dict(model.named_parameters())
    sizes = [params[n].numel() for n in names]
    wrap = _Wrap(model, fn)

    def f(flat):
        new = {f"model.{n}": p.view(params[n].shape) for n, p in zip(names, torch.split(flat, sizes))}
        return functional_call(wrap, new, (batch,), strict=False)

    return f, torch.cat([params[n].detach().reshape(-1) for n in names])


def _names(model):
    return [n for n, _ in model.named_parameters()]


def test_exact_equals_autograd_hessian_diagonal():
    model = _tiny().eval()
    names = _names(model)
    batches = [collate([e]) for e in _examples()]
    fs = [_flat_fn(model, names, sentence_loss, b) for b in batches]
    x = fs[0][1]
    ref = torch.diagonal(torch.autograd.functional.hessian(lambda v: sum(f(v) for f, _ in fs) / len(fs), x))
    ours = hessian_diagonal(model, names, batches, "exact")
    torch.testing.assert_close(
        torch.cat([ours[n].reshape(-1).double() for n in names]), ref, rtol=1e-5, atol=1e-7
    )


def test_fisher_equals_mean_squared_per_sentence_gradient():
    model = _tiny(1).eval()
    names = _names(model)
    batches = [collate([e]) for e in _examples(5)]
    fs = [_flat_fn(model, names, sentence_loss, b) for b in batches]
    x = fs[0][1]
    jac = torch.autograd.functional.jacobian(lambda v: torch.stack([f(v) for f, _ in fs]), x)  # (n, P)
    ref = jac.square().mean(0)
    ours = hessian_diagonal(model, names, batches, "fisher")
    torch.testing.assert_close(
        torch.cat([ours[n].reshape(-1).double() for n in names]), ref, rtol=1e-5, atol=1e-9
    )


def _ggn_diagonal(model, names, batches):
    """sum_t J_t^T (diag p_t - p_t p_t^T) J_t, mean over sentences, from full Jacobians."""
    from nmt_prune.saliency import token_logits

    total = 0
    for b in batches:
        f, x = _flat_fn(model, names, lambda m, bb: token_logits(m, bb)[0], b)
        jac = torch.autograd.functional.jacobian(f, x)  # (T, V, P)
        p = f(x).softmax(-1)  # (T, V)
        h = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)  # (T, V, V)
        total = total + torch.einsum("tak,tab,tbk->k", jac, h, jac)
    return total / len(batches)


def test_ggn_mc_is_an_unbiased_estimate_of_the_ggn_diagonal():
    model = _tiny(2).eval()
    names = _names(model)
    batches = [collate([e]) for e in _examples(3)]
    ref = _ggn_diagonal(model, names, batches)
    ours = hessian_diagonal(model, names, batches, "ggn_mc", samples=400, seed=0)
    est = torch.cat([ours[n].reshape(-1).double() for n in names])
    assert abs(est.sum() / ref.sum() - 1) < 0.05
    assert torch.corrcoef(torch.stack([est, ref]))[0, 1] > 0.97


def test_obd_is_half_h_w_squared_and_estimators_beat_magnitude():
    model = _tiny(3)
    names = [n for n, p in model.named_parameters() if p.dim() == 2]
    batches = [collate([e]) for e in _examples(6, seed=3)]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)  # near a minimum: OBD's assumption
    for _ in range(60):
        opt.zero_grad()
        sum(sentence_loss(model, b) for b in batches).backward()
        opt.step()
    model.eval()
    params = dict(model.named_parameters())
    exact = obd(model, names, batches, "exact")
    h = hessian_diagonal(model, names, batches, "exact")
    for n in names:
        torch.testing.assert_close(exact[n], 0.5 * h[n] * params[n].detach().square())
    classes = {"all": names}

    def pruned(scores):
        m = allocate(scores, classes, 0.5, "blind")
        return torch.cat([(~m[n]).reshape(-1) for n in names])

    ref = pruned(exact)

    def overlap(scores):
        return float((pruned(scores) & ref).sum() / ref.sum())

    mag = overlap(magnitude({n: params[n] for n in names}))
    fisher = overlap(obd(model, names, batches, "fisher"))
    ggn = overlap(obd(model, names, batches, "ggn_mc", samples=20))
    print(f"pruned-set overlap with exact OBD: fisher {fisher:.3f}, ggn_mc {ggn:.3f}, magnitude {mag:.3f}")
    assert fisher > mag and ggn > mag, (fisher, ggn, mag)


def test_snip_equals_gradient_wrt_explicit_mask_variables():
    model = _tiny(4)
    names = [n for n, p in model.named_parameters() if p.dim() == 2]
    ex = _examples(6, seed=4)
    batches = [collate(ex[:3]), collate(ex[3:])]
    params = dict(model.named_parameters())
    c = {n: torch.ones_like(params[n], requires_grad=True) for n in names}  # the paper's c_j
    masked = {f"model.{n}": c[n] * params[n].detach() for n in names}
    wrap = _Wrap(model.eval(), sentence_loss)
    loss = sum(functional_call(wrap, masked, (b,), strict=False) for b in batches)
    grads = torch.autograd.grad(loss, [c[n] for n in names])
    ours = snip(model, names, batches)
    for n, g in zip(names, grads):
        torch.testing.assert_close(ours[n].double(), g.abs())


def test_scoring_mode_is_training_mode_without_dropout():
    """cuDNN runs an LSTM backward in training mode only: scoring keeps the training flag on and
    sets every dropout to 0 (the eval-mode network), then restores both."""
    m = Seq2Seq(9, 8, emb_size=3, hidden_size=3, layers=2, dropout=0.3).double().eval()
    ex = [collate([e]) for e in _examples(2)]
    with torch.no_grad():
        reference = [sentence_loss(m, b) for b in ex]
    with _eval_mode(m):
        assert m.training and set(m.dropout_p.values()) == {0.0} and m.encoder.dropout == 0.0
        inside = [sentence_loss(m, b) for b in ex]
    assert [float(x) for x in inside] == [float(x) for x in reference]
    assert not m.training and set(m.dropout_p.values()) == {0.3} and m.encoder.dropout == 0.3


def test_long_scoring_says_how_far_it_is(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="nmt_prune.console")
    model = _tiny(4)
    names = [n for n, p in model.named_parameters() if p.dim() == 2]
    ex = _examples(6, seed=4)
    snip(model, names, [collate(ex[:3]), collate(ex[3:])])
    hessian_diagonal(model, names, [collate([e]) for e in ex], "fisher")
    assert "SNIP scoring: 2/2 batches" in caplog.text
    assert "OBD Hessian diagonal (fisher): 6/6 sentences" in caplog.text


def test_taylor_is_the_first_order_loss_change_of_removing_each_weight():
    """Independent reference: central finite differences of t -> L(w - t w_j e_j) at t = 0, whose
    derivative is -g_j w_j (the first-order change of the loss when w_j is removed)."""
    model = _tiny(5)
    names = [n for n, p in model.named_parameters() if p.dim() == 2]
    ex = _examples(5, seed=2)
    batches = [collate(ex[:2]), collate(ex[2:])]
    ours = taylor(model, names, batches)
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(0)

    def loss() -> float:
        with torch.no_grad():
            return float(sum(sentence_loss(model.eval(), b) for b in batches))

    h = 1e-4
    for n in names:
        w = params[n]
        for j in torch.randint(0, w.numel(), (3,), generator=g).tolist():
            wj = float(w.view(-1)[j])
            with torch.no_grad():
                w.view(-1)[j] = wj - h * wj
                up = loss()
                w.view(-1)[j] = wj + h * wj
                down = loss()
                w.view(-1)[j] = wj
            assert float(ours[n].view(-1)[j]) == pytest.approx(
                abs((up - down) / (2 * h)), rel=1e-4, abs=1e-10
            )
