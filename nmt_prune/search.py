"""Greedy and batched beam search over ``Seq2Seq.step_log_probs``."""

from __future__ import annotations

import torch
from torch import Tensor

from nmt_prune.data.text import BOS_ID, EOS_ID, PAD_ID
from nmt_prune.model import Seq2Seq


def length_limits(src_len: Tensor, ratio: float, extra: int) -> Tensor:
    """Per sentence, the most tokens a hypothesis may have (EOS included): ratio * |x| + extra.

    Per sentence, not per batch, so a translation never depends on which sentences share its
    batch (the translate CLI and evaluation batch differently).
    """
    return (src_len.float() * ratio).long() + extra


@torch.no_grad()
def greedy_search(
    model: Seq2Seq, src: Tensor, src_len: Tensor, max_len_ratio: float = 1.5, max_len_extra: int = 5
) -> Tensor:
    """Arg-max decoding. src (B, S) -> ids (B, L) with EOS then PAD after each hypothesis."""
    state = model.encode(src, src_len)
    B = src.shape[0]
    prev = torch.full((B,), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    limit = length_limits(src_len, max_len_ratio, max_len_extra)
    out = []
    for t in range(int(limit.max())):
        logp, state = model.step_log_probs(prev, state)
        prev = logp.argmax(-1)
        prev = prev.masked_fill(t + 1 >= limit, EOS_ID).masked_fill(done, PAD_ID)  # own limit: end
        out.append(prev)
        done |= prev == EOS_ID
        if done.all():
            break
    return torch.stack(out, 1)


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016 eq. 14); alpha=0 off."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_len: Tensor,
    beam_size: int = 5,
    alpha: float = 1.0,
    max_len_ratio: float = 1.5,
    max_len_extra: int = 5,
) -> Tensor:
    """Batched beam search. src (B, S) -> best ids (B, L), EOS-terminated, PAD after.

    All B x K hypotheses advance together. A finished hypothesis (it emitted EOS) stays in its
    beam and can only be extended by PAD at no cost, so its score stays fixed while open ones
    keep falling. A hypothesis that reaches its sentence's length limit must end there (EOS).
    The search stops when every hypothesis is finished; the winner maximises
    log p(Y|X) / lp(Y) (GNMT length penalty, ``alpha``).
    ``beam_size=1`` gives exactly the greedy result.
    """
    B, K = src.shape[0], beam_size
    state = model.encode(src, src_len)
    state = state.index_select(torch.arange(B, device=src.device).repeat_interleave(K))
    scores = torch.full((B, K), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive to avoid K copies
    prev = torch.full((B * K,), BOS_ID, dtype=torch.long, device=src.device)
    finished = torch.zeros(B * K, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(B * K, dtype=torch.long, device=src.device)
    limit = length_limits(src_len, max_len_ratio, max_len_extra).repeat_interleave(K)  # (B*K,)
    history: list[Tensor] = []  # tokens (B*K,) per step
    backptr: list[Tensor] = []  # source row (B*K,) per step
    for t in range(int(limit.max())):
        logp, state = model.step_log_probs(prev, state)  # (B*K, V), a fresh tensor: edit in place
        V = logp.shape[1]
        last = (t + 1 >= limit) & ~finished  # at its own length limit: only EOS
        eos = logp[:, EOS_ID].clone()
        logp.masked_fill_((finished | last).unsqueeze(1), float("-inf"))
        logp[:, EOS_ID] = torch.where(last, eos, logp[:, EOS_ID])
        logp[:, PAD_ID] = torch.where(finished, 0.0, float("-inf"))  # finished rows: PAD, free
        cand = logp.add_(scores.view(-1, 1)).view(B, K * V)
        scores, flat = cand.topk(K, dim=1)  # (B, K)
        rows = (flat // V + torch.arange(B, device=src.device).unsqueeze(1) * K).view(-1)
        prev = (flat % V).view(-1)
        state = state.index_select(rows)
        finished = finished.index_select(0, rows)
        lengths = lengths.index_select(0, rows) + (~finished).long()
        finished = finished | (prev == EOS_ID)
        history.append(prev)
        backptr.append(rows)
        if finished.all():
            break
    final = scores.view(-1) / length_penalty(lengths, alpha)
    best = final.view(B, K).argmax(1) + torch.arange(B, device=src.device) * K  # (B,) rows
    tokens = []
    row = best
    for tok, ptr in zip(reversed(history), reversed(backptr)):
        tokens.append(tok.index_select(0, row))
        row = ptr.index_select(0, row)
    return torch.stack(tokens[::-1], 1)
