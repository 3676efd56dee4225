"""Greedy and batched beam search over ``Seq2Seq.step_log_probs``."""

from __future__ import annotations

import torch
from torch import Tensor

from nmt_prune.data.text import BOS_ID, EOS_ID, PAD_ID
from nmt_prune.model import Seq2Seq

#: the most tokens any hypothesis may have, whatever its source length (``eval.max_len_cap``)
MAX_LEN_CAP = 256


def length_limits(src_len: Tensor, ratio: float, extra: int, cap: int = MAX_LEN_CAP) -> Tensor:
    """Per sentence, the most tokens a hypothesis may have (EOS included): ratio * |x| + extra,
    and never more than ``cap`` (one 5,000-token line must not decode for 7,500 steps).

    Per sentence, not per batch, so a translation never depends on which sentences share its
    batch (the translate CLI and evaluation batch differently).
    """
    return ((src_len.float() * ratio).long() + extra).clamp(max=cap)


@torch.no_grad()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_len: Tensor,
    max_len_ratio: float = 1.5,
    max_len_extra: int = 5,
    max_len_cap: int = MAX_LEN_CAP,
) -> Tensor:
    """Arg-max decoding. src (B, S) -> ids (B, L) with EOS then PAD after each hypothesis."""
    state = model.encode(src, src_len)
    B = src.shape[0]
    prev = torch.full((B,), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    limit = length_limits(src_len, max_len_ratio, max_len_extra, max_len_cap)
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


def row_topk(x: Tensor, k: int, chunk: int = 64) -> tuple[Tensor, Tensor]:
    """``x.topk(k, dim=1)`` for wide rows (a vocabulary), the same values, 2.7-3.7x faster here.

    The k largest entries of a row lie in the k chunks (of ``chunk`` columns) whose maxima are
    largest: a chunk outside those has k chunks whose maxima are at least its own maximum, k
    entries at least as large as any of its entries. So the full selection runs on the maxima and
    on k x ``chunk`` entries (plus the columns left over after the last whole chunk). Values are
    exactly ``topk``'s, and so are indices wherever the values are distinct; among equal values the
    choice, unspecified for ``topk`` too, may differ."""
    rows, width = x.shape
    n = width // chunk
    if n <= k:
        return x.topk(k, dim=1)
    whole = n * chunk
    chunks = x[:, :whole].view(rows, n, chunk)
    best = chunks.amax(-1).topk(k, dim=1).indices  # (rows, k)
    picked = chunks.gather(1, best.unsqueeze(-1).expand(rows, k, chunk)).view(rows, k * chunk)
    values, i = torch.cat([picked, x[:, whole:]], 1).topk(k, dim=1)
    in_chunks = i < k * chunk
    col = best.gather(1, (i // chunk).clamp(max=k - 1)) * chunk + i % chunk
    return values, torch.where(in_chunks, col, whole + i - k * chunk)


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
    max_len_cap: int = MAX_LEN_CAP,
) -> Tensor:
    """Batched beam search. src (B, S) -> best ids (B, L), EOS-terminated, PAD after.

    The search: all B x K hypotheses advance together. A finished hypothesis (it emitted EOS)
    stays in its beam and can only be extended by PAD at no cost, so its score stays fixed while
    open ones keep falling. A hypothesis that reaches its sentence's length limit must end there
    (EOS). A sentence is done when its K hypotheses are finished; the winner maximises
    log p(Y|X) / lp(Y) (GNMT length penalty, ``alpha``). ``beam_size=1`` gives exactly the greedy
    result.

    The work per step is only what the search needs (bench/decode_speed.py checks the hypotheses
    against the plain formulation, which moves every tensor every step): the decoder weights are
    fused once per search; after a step only the recurrent state (h, c, h~) follows the surviving
    beams, since a sentence's K beams share its encoder memory, attention keys and mask; and a
    sentence that is done leaves the batch (its best hypothesis is chosen then: a done sentence's
    beams could only be extended by free PADs), so the others stop paying for it and the search
    lasts as long as its longest open sentence.
    """
    dev = src.device
    B, K = src.shape[0], beam_size
    fused = model._fused_weights()
    # step 0 extends one row per sentence (the K beams would start identical) into K beams
    state = model.encode(src, src_len)
    scores = torch.zeros((B, 1), device=dev)  # (sentences, rows per sentence)
    prev = torch.full((B,), BOS_ID, dtype=torch.long, device=dev)
    finished = torch.zeros(B, dtype=torch.bool, device=dev)
    lengths = torch.zeros(B, dtype=torch.long, device=dev)
    limit = length_limits(src_len, max_len_ratio, max_len_extra, max_len_cap)
    steps = int(limit.max())
    alive = torch.arange(B, device=dev)  # the sentence of each group of K rows
    end_step = torch.full((B,), steps - 1, dtype=torch.long, device=dev)  # step each sentence was done
    end_row = torch.zeros(B, dtype=torch.long, device=dev)  # its best row in that step's layout
    history: list[Tensor] = []  # tokens per step, in that step's row layout
    backptr: list[Tensor] = []  # per step, the row of the previous step's layout it extends
    to_prev_layout: Tensor | None = None  # rows of the previous layout kept when sentences left
    for t in range(steps):
        n, R = scores.shape
        att, state = model.decode_step(prev, state, fused)
        # candidates: each open row's K best next tokens (a row's ranking is its log-probabilities'),
        # each finished row's one free PAD; then each sentence's K best of its K x K
        flat_scores = scores.view(-1)
        opened = (~finished).nonzero().squeeze(1)
        logp = model.generator(att.index_select(0, opened)).log_softmax(-1)  # (open, V)
        logp[:, PAD_ID] = float("-inf")
        at_limit = (t + 1 >= limit.index_select(0, opened)).nonzero().squeeze(1)  # only EOS may follow
        if at_limit.numel():
            eos = logp[at_limit, EOS_ID]
            logp.index_fill_(0, at_limit, float("-inf"))
            logp[at_limit, EOS_ID] = eos
        top, tok = row_topk(logp, K)  # (open, K)
        cand = scores.new_full((n * R, K), float("-inf"))
        cand_tok = torch.full((n * R, K), PAD_ID, dtype=torch.long, device=dev)
        cand.index_copy_(0, opened, top + flat_scores.index_select(0, opened).unsqueeze(1))
        cand_tok.index_copy_(0, opened, tok)
        done_rows = finished.nonzero().squeeze(1)
        cand[done_rows, 0] = flat_scores.index_select(0, done_rows)
        scores, pick = cand.view(n, R * K).topk(K, dim=1)  # (n, K)
        rows = (pick // K + torch.arange(n, device=dev).unsqueeze(1) * R).view(-1)
        prev = cand_tok.view(n, R * K).gather(1, pick).view(-1)
        state = state.reorder_beams(rows) if R == K else state.index_select(rows)  # step 0: all of it
        finished = finished.index_select(0, rows)
        lengths = lengths.index_select(0, rows) + (~finished).long()
        limit = limit.index_select(0, rows) if R != K else limit
        finished = finished | (prev == EOS_ID)
        history.append(prev)
        backptr.append(rows if to_prev_layout is None else to_prev_layout.index_select(0, rows))
        to_prev_layout = None
        done = finished.view(n, K).all(1)
        if not done.any() and t + 1 < steps:
            continue
        best = (scores / length_penalty(lengths.view(n, K), alpha)).argmax(1) + torch.arange(
            n, device=dev
        ) * K
        if t + 1 == steps:  # the last step: every open hypothesis was made to end (EOS)
            done = torch.ones_like(done)
        end_step[alive[done]] = t
        end_row[alive[done]] = best[done]
        if done.all():
            break
        keep = (~done).nonzero().squeeze(1)
        keep_rows = (keep.unsqueeze(1) * K + torch.arange(K, device=dev)).view(-1)
        alive, scores = alive.index_select(0, keep), scores.index_select(0, keep)
        state = state.index_select(keep_rows)
        prev, finished = prev.index_select(0, keep_rows), finished.index_select(0, keep_rows)
        lengths, limit = lengths.index_select(0, keep_rows), limit.index_select(0, keep_rows)
        to_prev_layout = keep_rows
    out = torch.full((B, len(history)), PAD_ID, dtype=torch.long, device=dev)
    row = end_row.clone()
    for t in range(len(history) - 1, -1, -1):
        on = (end_step >= t).nonzero().squeeze(1)  # sentences whose hypothesis reaches step t
        r = row.index_select(0, on)
        out[on, t] = history[t].index_select(0, r)
        row[on] = backptr[t].index_select(0, r)
    return out
