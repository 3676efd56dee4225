"""Layer-wise Optimal Brain Surgeon (Hassibi & Stork 1993), made tractable row by row as in OBC
(Frantar & Alistarh 2022) and SparseGPT (Frantar & Alistarh 2023).

Per weight matrix W (rows r, inputs d) the loss is the layer's squared output error on real
activations, E(W') = sum_x ||W x - W' x||^2, whose Hessian in each row is the same
H = 2 sum_x x x^T (d x d): the rows are independent. OBS removes from a row the weight with the
least

    dL_q = w_q^2 / (2 [H^-1]_qq)                          (Hassibi & Stork 1993, eq. 5)

and moves the row's other weights by dw = -(w_q / [H^-1]_qq) H^-1 e_q (their eq. 4), the exact
minimiser of E with w_q = 0; then it removes row and column q from H^-1 (OBC, eq. 3:
H^-1 <- H^-1 - H^-1_:q H^-1_q: / [H^-1]_qq) and repeats. ``row_traces`` runs this greedy loop
to the end of every row and records the order and each step's dL_q; dL_q is the exact increase of
E, so the traces of all rows of all matrices are one ranking (OBC sect. 4: a global mask from the
per-row traces). A row's score for its j-th removal is the running maximum of its first j
increments: greedy OBS on the whole (block-diagonal) Hessian takes the rows' next steps in that
order, and any threshold on it selects a prefix of every trace.

The class allocation (blind / uniform / distribution) then decides how many weights each class
loses; ``finish`` turns each row's count into the first steps of its trace and sets the row to
the weights OBS reaches there: the least-squares reconstruction with the removed weights at zero,
w'_K = w_K + H_KK^-1 H_KP w_P (K kept, P pruned), which is what the sequential updates compute
(tests check both against brute-force OBS with the full inverse Hessian).

Choices: H is dampened as in OBC and SparseGPT, H + lambda mean(diag H) I (``damp``, default
0.01), so it is invertible when inputs are collinear or dead. X: the inputs each matrix sees on
``sentences`` training sentences, teacher-forced, dropout off (``layer_error.layer_inputs``: the
layer input and h_{t-1} for an LSTM's W_ih and W_hh at every step, [context; h] for W_c, the
encoder outputs for W_a, h~ for the softmax layer). Embeddings are a lookup: their input is
one-hot, so H is diagonal, 2 n_t for word t, and OBS there is the same formula without any update
(dL = w^2 n_t, an OBD on the layer's own loss); n_t is word t's count in the whole training set,
scaled to the sample's token count so that the scores rank against the other layers'. Biases are
not pruned (See et al.).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from nmt_prune.console import Progress
from nmt_prune.data.datamodule import collate
from nmt_prune.data.text import BOS_ID
from nmt_prune.layer_error import layer_inputs

#: rows whose inverse Hessians are updated together (memory: chunk x d x d floats)
CHUNK = 64


def dampen(h: Tensor, damp: float) -> Tensor:
    """H + damp * mean(diag H) I (OBC, SparseGPT); a zero H gets damp * I."""
    mean = float(h.diagonal().mean())
    return h + (damp * (mean if mean > 0 else 1.0)) * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)


def row_traces(w: Tensor, h: Tensor, chunk: int = CHUNK, dtype: torch.dtype = torch.float32):
    """Greedy OBS to the end of every row of ``w`` (r, d) under the (dampened) Hessian ``h``.

    Returns ``order`` (r, d): the input index removed at each step, and ``inc`` (r, d): that
    step's dL_q = w_q^2 / (2 [H^-1]_qq) with the row as the earlier steps left it.
    """
    r, d = w.shape
    hinv = torch.linalg.inv(h.double()).to(dtype)
    order = torch.empty(r, d, dtype=torch.long, device=w.device)
    inc = torch.empty(r, d, dtype=dtype, device=w.device)
    for s in range(0, r, chunk):
        e = min(s + chunk, r)
        ww = w[s:e].detach().to(dtype).clone()
        hi = hinv.expand(e - s, d, d).clone()
        removed = torch.zeros(e - s, d, dtype=torch.bool, device=w.device)
        rows = torch.arange(e - s, device=w.device)
        for t in range(d):
            diag = hi.diagonal(dim1=1, dim2=2)
            score = (ww.square() / diag).masked_fill(removed, float("inf"))
            q = score.argmin(1)
            order[s:e, t] = q
            inc[s:e, t] = score[rows, q] / 2
            col = hi[rows, :, q]  # (c, d): H^-1 e_q of each row
            hqq = col[rows, q].unsqueeze(1)
            ww -= (ww[rows, q].unsqueeze(1) / hqq) * col
            ww[rows, q] = 0.0
            removed[rows, q] = True
            hi.baddbmm_((col / hqq).unsqueeze(2), col.unsqueeze(1), alpha=-1.0)
    return order, inc


def trace_scores(order: Tensor, inc: Tensor) -> Tensor:
    """Per weight: the running maximum of its row's increments up to its step (module doc)."""
    return torch.zeros_like(inc).scatter_(1, order, torch.cummax(inc, 1).values)


def reconstruct(w: Tensor, h: Tensor, keep: Tensor) -> Tensor:
    """Each row's OBS optimum with its pruned weights at zero: w'_K = w_K + H_KK^-1 H_KP w_P."""
    out = torch.zeros_like(w)
    hd, wd = h.double(), w.detach().double()
    for i in range(w.shape[0]):
        k, p = keep[i], ~keep[i]
        if not k.any():
            continue
        if not p.any():
            out[i] = w[i]
            continue
        rhs = hd[k][:, p] @ wd[i, p]
        out[i, k] = (wd[i, k] + torch.linalg.solve(hd[k][:, k], rhs)).to(w.dtype)
    return out


def prefix_masks(order: Tensor, keep: Tensor) -> Tensor:
    """The same count per row as ``keep``, taken as the first steps of each row's trace."""
    n = (~keep).sum(1, keepdim=True)
    steps = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.ones_like(keep).scatter_(1, order, steps >= n)


def sample_batches(dm, sentences: int, seed: int, size: int = 64) -> list[dict[str, Tensor]]:
    """``sentences`` training sentences drawn without replacement (seeded), batches of ``size``."""
    train = dm.splits["train"]
    idx = random.Random(seed).sample(range(len(train.src)), min(sentences, len(train.src)))
    examples = [(i, train.src[i], train.tgt[i]) for i in idx]
    return [collate(examples[s : s + size]) for s in range(0, len(examples), size)]


def lookup_counts(dm) -> dict[str, Tensor]:
    """Embedding name -> how often each row is looked up in the whole training set (the source
    words; the target words and one <s> per sentence: the decoder's inputs)."""
    train = dm.splits["train"]
    src = torch.bincount(torch.tensor([i for s in train.src for i in s]), minlength=len(dm.src_vocab))
    tgt = torch.bincount(torch.tensor([i for t in train.tgt for i in t]), minlength=len(dm.tgt_vocab))
    tgt[BOS_ID] += len(train.tgt)
    return {"src_embed.weight": src, "tgt_embed.weight": tgt}


def hessians(model, names: Sequence[str], batches: Sequence[dict[str, Tensor]]):
    """H = 2 sum x x^T (float64) for every matrix in ``names`` that has inputs; for the lookups
    (embeddings), the number of tokens looked up."""
    device = next(model.parameters()).device
    hs: dict[str, Tensor] = {}
    looked_up: dict[str, int] = {}
    progress = Progress("obs inputs", len(batches), "batches")
    for b in batches:
        b = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in b.items()}
        for name, x in layer_inputs(model, [b]).items():
            if x.dtype == torch.long:
                looked_up[name] = looked_up.get(name, 0) + x.numel()
            elif name in names:
                x = x.double()
                hs[name] = hs.get(name, 0) + 2 * x.t() @ x
        progress.step()
    return hs, looked_up


def scores(model, names: Sequence[str], dm, sentences: int, seed: int, damp: float):
    """Scores for every name (higher = more important), the state ``finish`` needs (dampened H
    and the trace order of every matrix) and what data was used."""
    params = dict(model.named_parameters())
    batches = sample_batches(dm, sentences, seed)
    hs, looked_up = hessians(model, names, batches)
    counts = lookup_counts(dm)
    out, state = {}, {}
    t0 = time.perf_counter()
    progress = Progress("obs traces", len([n for n in names if n in hs]), "matrices")
    for n in names:
        w = params[n].detach()
        if n in hs:
            h = dampen(hs[n], damp)
            order, inc = row_traces(w, h.to(w.device))
            out[n] = trace_scores(order, inc).float()
            state[n] = {"h": h, "order": order}
            progress.step()
        elif n in counts:  # a lookup: diagonal H = 2 n_t, dL = w^2 n_t (module docstring)
            c = counts[n].to(w.device).double()
            n_t = c * (looked_up[n] / float(c.sum()))
            out[n] = (w.double().square() * n_t.unsqueeze(1)).float()
        else:
            raise ValueError(f"prune.method=obs: no inputs recorded for {n}")
    used = {
        "sentences": sum(len(b["idx"]) for b in batches),
        "tokens": looked_up.get("tgt_embed.weight", 0),
        "damp": damp,
        "trace_s": round(time.perf_counter() - t0, 1),
    }
    return out, state, used


@torch.no_grad()
def finish(model, state: Mapping[str, Mapping[str, Tensor]], keep: Mapping[str, Tensor]):
    """Per matrix with a trace: the allocation's count per row as a prefix of the trace, and the
    row's OBS weights there. Returns (keep-masks, new weights of those matrices)."""
    params = dict(model.named_parameters())
    masks, weights = dict(keep), {}
    for n, st in state.items():
        m = prefix_masks(st["order"], keep[n].to(st["order"].device))
        weights[n] = reconstruct(params[n].detach(), st["h"].to(params[n].device), m)
        masks[n] = m
    return masks, weights
