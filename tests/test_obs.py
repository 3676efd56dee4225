"""nmt_prune.obs, layer-wise OBS: the per-row traces, the global ranking and the reconstruction
equal brute-force OBS on the whole matrix with the full inverse Hessian recomputed at every
step; the layer output error is below magnitude pruning's."""

from __future__ import annotations

import pytest
import torch

from nmt_prune import obs
from nmt_prune.allocation import allocate


def _layer(r=5, d=6, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)  # correlated inputs: H far from diagonal
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix
    w = torch.randn(r, d, generator=g, dtype=torch.float64)
    return w, x


def _brute_force_obs(w: torch.Tensor, h_row: torch.Tensor, steps: int):
    """Hassibi & Stork on the flattened matrix: the full Hessian kron(I_r, H) restricted to the
    weights still there, inverted from scratch every step; global argmin of w_q^2 / (2 [H^-1]_qq).
    Yields (removed flat index, dL, the weights after the step)."""
    r, d = w.shape
    full = torch.kron(torch.eye(r, dtype=w.dtype), h_row)
    v = w.reshape(-1).clone()
    alive = list(range(r * d))
    for _ in range(steps):
        hinv = torch.linalg.inv(full[alive][:, alive])
        sal = v[alive].square() / (2 * hinv.diagonal())
        j = int(sal.argmin())
        q = alive[j]
        v[alive] -= (v[q] / hinv[j, j]) * hinv[:, j]
        v[q] = 0.0
        alive.pop(j)
        yield q, float(sal[j]), v.reshape(r, d).clone()


def test_traces_and_reconstruction_equal_brute_force_obs():
    w, x = _layer()
    h = obs.dampen(2 * x.t() @ x, 0.0)
    order, inc = obs.row_traces(w, h, chunk=2, dtype=torch.float64)  # chunks: rows split across them
    scores = obs.trace_scores(order, inc)
    steps = w.numel() - 3
    for k, (q, dl, w_ref) in enumerate(_brute_force_obs(w, h, steps), start=1):
        keep = allocate({"w": scores}, {"c": ["w"]}, k / w.numel(), "blind")["w"]
        keep = obs.prefix_masks(order, keep)
        assert not keep.reshape(-1)[q]  # the k-th weight brute force removes is among ours
        assert int((~keep).sum()) == k
        torch.testing.assert_close(obs.reconstruct(w, h, keep), w_ref, rtol=1e-7, atol=1e-9)
        row, col = divmod(q, w.shape[1])
        step = int((~keep[row]).sum()) - 1  # the k-th removal is the last of its row so far
        assert order[row, step] == col
        assert inc[row, step].item() == pytest.approx(dl, rel=1e-7)  # the same dL at that step


def test_increments_add_up_to_the_output_error():
    w, x = _layer(3, 8, 30, seed=1)
    h = obs.dampen(2 * x.t() @ x, 0.0)
    order, inc = obs.row_traces(w, h, dtype=torch.float64)
    keep = obs.prefix_masks(order, torch.ones_like(w, dtype=torch.bool).scatter_(1, order[:, :5], False))
    w2 = obs.reconstruct(w, h, keep)
    err = float((x @ (w - w2).t()).square().sum())
    assert err == pytest.approx(float(inc[:, :5].sum()), rel=1e-7)  # E = sum of the exact dL


@pytest.mark.parametrize("pct", [50, 80, 95])
def test_output_error_is_below_magnitude_pruning(pct):
    w, x = _layer(16, 24, 200, seed=2)
    h = obs.dampen(2 * x.t() @ x, 0.01)
    order, inc = obs.row_traces(w.float(), h.float())
    keep = allocate({"w": obs.trace_scores(order, inc)}, {"c": ["w"]}, pct / 100, "blind")["w"]
    keep = obs.prefix_masks(order, keep)
    w_obs = obs.reconstruct(w, h, keep)
    w_mag = w * allocate({"w": w.abs()}, {"c": ["w"]}, pct / 100, "blind")["w"]
    err_obs, err_mag = (float((x @ (w - v).t()).norm()) for v in (w_obs, w_mag))
    assert int((w_obs == 0).sum()) == int((w_mag == 0).sum())  # the same sparsity
    assert err_obs < err_mag


def test_float32_traces_match_float64():
    w, x = _layer(8, 32, 300, seed=3)
    h = obs.dampen(2 * x.t() @ x, 0.01)
    o64, i64 = obs.row_traces(w, h, dtype=torch.float64)
    o32, i32 = obs.row_traces(w.float(), h.float())
    assert (o64[:, :24] == o32[:, :24]).float().mean() > 0.95  # the same removal order, mostly
    torch.testing.assert_close(i32[:, :8].double(), i64[:, :8], rtol=1e-3, atol=1e-6)
