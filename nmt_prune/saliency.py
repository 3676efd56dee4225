"""Saliency criteria: parameters (and what else a criterion needs) -> one score per weight.

Pure functions on tensors. A higher score means more important: allocation prunes the lowest.
Each returns ``{name: float tensor shaped like the parameter}`` for the names it is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt_prune.console import Progress
from nmt_prune.data.text import PAD_ID
from nmt_prune.names import OBD_ESTIMATORS  # noqa: F401  (re-exported)


def magnitude(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """|w| (See, Luong & Manning 2016, sect. 3: magnitude-based pruning)."""
    return {n: p.detach().abs().float() for n, p in params.items()}


def random(params: Mapping[str, Tensor], seed: int) -> dict[str, Tensor]:
    """i.i.d. U(0, 1) scores from a generator seeded with ``seed`` (the random-pruning control).

    Drawn on CPU in the order of ``params`` so the mask depends on the seed only, not on the
    device or on the global RNG state.
    """
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g).to(p.device) for n, p in params.items()}


def token_logits(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Teacher-forced logits at the real (non-padding) target positions: (N, V), labels (N,)."""
    states = model.attentional_states(batch["tgt_in"], model.encode(batch["src"], batch["src_len"]))
    real = batch["tgt_out"] != PAD_ID
    return model.generator(states[real]), batch["tgt_out"][real]


def sentence_loss(
    model: nn.Module, batch: dict[str, Tensor], sample: torch.Generator | None = None
) -> Tensor:
    """Summed token NLL of the batch (padding excluded; no label smoothing).

    With ``sample`` (a generator), the labels are drawn from the model's own output distribution
    at every position instead of the references: the Monte-Carlo Gauss-Newton estimator.
    """
    logits, labels = token_logits(model, batch)
    if sample is not None:
        with torch.no_grad():
            probs = logits.float().softmax(-1).cpu()
            labels = torch.multinomial(probs, 1, generator=sample).squeeze(1).to(logits.device)
    return F.cross_entropy(logits, labels, reduction="sum")


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Deterministic network while scoring: every dropout probability 0, in *training* mode,
    since cuDNN computes an LSTM's backward pass in training mode only (the scores need
    gradients); dropout 0 gives exactly the eval-mode network. Restores the rates and the flag."""
    was = model.training
    rates = dict(getattr(model, "dropout_p", {}))
    if rates:
        model.set_dropout(dict.fromkeys(rates, 0.0))
    model.train(bool(rates) or was)  # a model without dropout sites: left as it was
    try:
        yield
    finally:
        if rates:
            model.set_dropout(rates)
        model.train(was)


def _acc(p: Tensor) -> torch.dtype:
    """Accumulate in float32 at least (float64 stays float64)."""
    return torch.promote_types(p.dtype, torch.float32)


def _batch_to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def hessian_diagonal(
    model: nn.Module,
    names: Sequence[str],
    examples: Sequence[dict[str, Tensor]],
    estimator: str,
    samples: int = 1,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Diagonal of the Hessian of L = mean over examples of the sentence loss, per parameter.

    ``examples``: batches of ONE sentence each (per-example gradients; no padding at all).
    - ``fisher``: mean over sentences of the squared per-sentence gradient (empirical Fisher).
    - ``ggn_mc``: the same with labels sampled from the model (``samples`` draws per sentence):
      E[g g^T] over sampled labels is the generalised Gauss-Newton matrix of softmax cross entropy
      (J^T (diag p - p p^T) J summed over positions), so its diagonal is unbiased.
    - ``exact``: d2L/dw_k^2 by double backprop, one Hessian-vector product per weight: for tiny
      models (tests). cuDNN RNNs have no double backward, so cuDNN is off for it.
    """
    if estimator not in OBD_ESTIMATORS:
        raise ValueError(f"prune.obd.estimator={estimator!r}; valid choices: {', '.join(OBD_ESTIMATORS)}")
    params = dict(model.named_parameters())
    ps = [params[n] for n in names]
    device = ps[0].device
    diag = [torch.zeros_like(p, dtype=_acc(p)) for p in ps]
    n = len(examples)
    with _eval_mode(model):
        if estimator == "exact":
            with torch.backends.cudnn.flags(enabled=False):
                loss = sum(sentence_loss(model, _batch_to(b, device)) for b in examples) / n
                grads = torch.autograd.grad(loss, ps, create_graph=True)
                for d, g, p in zip(diag, grads, ps):
                    flat = g.reshape(-1)
                    for i in range(flat.numel()):
                        (row,) = torch.autograd.grad(flat[i], p, retain_graph=True)
                        d.view(-1)[i] = row.reshape(-1)[i]
            return dict(zip(names, diag))
        gen = torch.Generator().manual_seed(seed) if estimator == "ggn_mc" else None
        draws = samples if estimator == "ggn_mc" else 1
        progress = Progress(f"OBD Hessian diagonal ({estimator})", n, "sentences")
        for b in examples:
            progress.step()
            b = _batch_to(b, device)
            for _ in range(draws):
                grads = torch.autograd.grad(sentence_loss(model, b, gen), ps)
                for d, g in zip(diag, grads):
                    d.add_(g.to(d.dtype).square())
    return {nm: d / (n * draws) for nm, d in zip(names, diag)}


def obd(
    model: nn.Module,
    names: Sequence[str],
    examples: Sequence[dict[str, Tensor]],
    estimator: str = "fisher",
    samples: int = 1,
    seed: int = 0,
    h: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Optimal Brain Damage saliency s_k = 1/2 h_kk w_k^2 (LeCun, Denker & Solla 1989, eq. 5).

    The second-order Taylor term with the off-diagonal Hessian terms dropped; the first-order term
    is dropped because the model is trained (at a minimum the gradient vanishes). h_kk comes from
    ``hessian_diagonal`` over ``examples`` (see there for the estimators), or is given (``h``).

    The Hessian is the training objective's (LeCun et al.: over the training set); estimated on a
    sample of it, a weight that no sampled sentence sends a gradient to has h_kk = 0 and scores 0:
    an embedding row of a word the sample does not contain ranks as free to prune
    (``zero_curvature`` counts them; docs/study.md, OBD vs magnitude, measures what it costs).
    """
    if h is None:
        h = hessian_diagonal(model, names, examples, estimator, samples, seed)
    params = dict(model.named_parameters())
    return {n: 0.5 * h[n] * params[n].detach().to(h[n].dtype).square() for n in names}


def zero_curvature(h: Mapping[str, Tensor]) -> dict[str, int]:
    """Weights per parameter whose estimated Hessian diagonal is exactly 0 (none omitted)."""
    counts = {n: int((d == 0).sum()) for n, d in h.items()}
    return {n: c for n, c in counts.items() if c}


def _grad_times_weight(
    model: nn.Module, names: Sequence[str], batches: Iterable[dict[str, Tensor]], label: str
):
    """|w_j * sum over batches of dL/dw_j|, L the summed token loss of each batch."""
    params = dict(model.named_parameters())
    ps = [params[n] for n in names]
    total = [torch.zeros_like(p, dtype=_acc(p)) for p in ps]
    device = ps[0].device
    batches = list(batches)
    progress = Progress(label, len(batches), "batches")
    with _eval_mode(model):
        for b in batches:
            progress.step()
            grads = torch.autograd.grad(sentence_loss(model, _batch_to(b, device)), ps)
            for t, g in zip(total, grads):
                t.add_(g.to(t.dtype))
    return {n: (t * p.detach().to(t.dtype)).abs() for n, t, p in zip(names, total, ps)}


def snip(model: nn.Module, names: Sequence[str], batches: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
    """SNIP connection sensitivity |dL/dc_j| = |g_j w_j| (Lee, Ajanthan & Torr 2019, eq. 5-6).

    L is the summed token loss over all of ``batches`` (the data fraction): the gradients of the
    batches are summed first and the absolute value taken once, so the score is the sensitivity
    of the loss on that data (not a sum of per-batch magnitudes, which would count gradient
    noise as sensitivity). The paper's normalisation by the sum of all scores does not change
    the ranking and is left out.
    """
    return _grad_times_weight(model, names, batches, "SNIP scoring")


def taylor(model: nn.Module, names: Sequence[str], batches: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
    """First-order Taylor importance |Delta L| ~ |g_j w_j| of removing weight j (Molchanov et al.
    2017, "Pruning convolutional neural networks for resource efficient inference", eq. 3-8,
    applied to single weights; Mozer & Smolensky 1989's skeletonization is the same first-order
    estimate): the loss change when w_j is set to 0, to first order, is -g_j w_j.

    The same quantity as SNIP's (``snip``: there at initialisation), taken on a trained model or
    one being trained, with g summed over ``batches`` before the absolute value. At an exact
    minimum the summed gradient vanishes, so on a converged model the score measures what is left
    of the gradient on the data sample; that is the criterion as defined, and the study compares
    it with magnitude and OBD.
    """
    return _grad_times_weight(model, names, batches, "Taylor scoring")
