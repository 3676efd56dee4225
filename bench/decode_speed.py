"""Beam search speed: the search as first written (kept here as the reference) vs
``nmt_prune.search.beam_search``, on the same model, batches and threads, in one process.

    python bench/decode_speed.py CHECKPOINT --data-root ../shared/data/multi30k [--beam 5]
        [--batch-size 64] [--threads 2] [--rounds 3]

Decodes the test set (Multi30k test2016 by default: ``--split``) with both searches in alternating
rounds (drifts in machine speed hit both), checks that every hypothesis is identical, and prints
sentences/s of each and the time ratio new / reference (goal: at most 0.5). Then, in one more
untimed round of each, counts the rows each search sends through the softmax layer (the
(rows, H) x (H, V) product that takes most of the time of both): the new search's share of the
reference's rows is about where its time ratio can get to with the same kernels per row.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor

from nmt_prune.data.datamodule import collate
from nmt_prune.data.text import BOS_ID, EOS_ID, PAD_ID, encode_source
from nmt_prune.module import NMTModule
from nmt_prune.runtime import keep_freed_memory
from nmt_prune.search import beam_search, length_limits, length_penalty


@torch.no_grad()
def reference_beam_search(
    model, src, src_len, beam_size=5, alpha=1.0, max_len_ratio=1.5, max_len_extra=5
) -> Tensor:
    """The beam search as first written: every tensor of the decoder state (encoder memory and
    attention keys included) follows the beams at every step, the decoder weights are fused at
    every step, and every sentence steps until the whole batch is finished."""
    B, K = src.shape[0], beam_size
    state = model.encode(src, src_len)
    state = state.index_select(torch.arange(B, device=src.device).repeat_interleave(K))
    scores = torch.full((B, K), float("-inf"), device=src.device)
    scores[:, 0] = 0.0
    prev = torch.full((B * K,), BOS_ID, dtype=torch.long, device=src.device)
    finished = torch.zeros(B * K, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(B * K, dtype=torch.long, device=src.device)
    limit = length_limits(src_len, max_len_ratio, max_len_extra).repeat_interleave(K)
    history, backptr = [], []
    for t in range(int(limit.max())):
        logp, state = model.step_log_probs(prev, state, model._fused_weights())
        V = logp.shape[1]
        last = (t + 1 >= limit) & ~finished
        eos = logp[:, EOS_ID].clone()
        logp.masked_fill_((finished | last).unsqueeze(1), float("-inf"))
        logp[:, EOS_ID] = torch.where(last, eos, logp[:, EOS_ID])
        logp[:, PAD_ID] = torch.where(finished, 0.0, float("-inf"))
        cand = logp.add_(scores.view(-1, 1)).view(B, K * V)
        scores, flat = cand.topk(K, dim=1)
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
    row = final.view(B, K).argmax(1) + torch.arange(B, device=src.device) * K
    tokens = []
    for tok, ptr in zip(reversed(history), reversed(backptr)):
        tokens.append(tok.index_select(0, row))
        row = ptr.index_select(0, row)
    return torch.stack(tokens[::-1], 1)


def decode(module: NMTModule, batches: list[dict], search, beam: int) -> tuple[list[list[int]], float]:
    ev = module.hparams.eval
    t0 = time.perf_counter()
    out = []
    for b in batches:
        ids = search(
            module.model,
            b["src"],
            b["src_len"],
            beam,
            ev["length_penalty"],
            ev["max_len_ratio"],
            ev["max_len_extra"],
        )
        for row in ids.tolist():
            out.append(row[: row.index(EOS_ID) + 1] if EOS_ID in row else [t for t in row if t != PAD_ID])
    return out, time.perf_counter() - t0


def softmax_rows(module: NMTModule, batches: list[dict], search, beam: int) -> int:
    """Rows the search sends through the softmax layer (``generator``) over ``batches``."""
    rows = [0]
    hook = module.model.generator.register_forward_hook(
        lambda m, i, o: rows.__setitem__(0, rows[0] + i[0].shape[0])
    )
    try:
        decode(module, batches, search, beam)
    finally:
        hook.remove()
    return rows[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a .ckpt written by run.py (e.g. a dense cache entry's best.ckpt)")
    ap.add_argument("--data-root", default="../shared/data/multi30k")
    ap.add_argument("--split", default="test_2016_flickr.en", help="source file under --data-root")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--default-malloc", action="store_true", help="skip keep_freed_memory (run.py uses it)")
    args = ap.parse_args()
    if not args.default_malloc:
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    module = NMTModule.from_checkpoint(args.checkpoint)
    lines = Path(args.data_root, args.split).read_text(encoding="utf-8").splitlines()
    enc = [encode_source(module.src_tok, module.src_vocab, x) for x in lines]
    order = sorted(range(len(lines)), key=lambda i: len(enc[i]))  # as the translate CLI batches
    batches = [
        collate([(i, enc[i], []) for i in order[s : s + args.batch_size]])
        for s in range(0, len(order), args.batch_size)
    ]
    times: dict[str, list[float]] = {"reference": [], "new": []}
    hyps = {}
    for _ in range(args.rounds):
        for name, fn in (("reference", reference_beam_search), ("new", beam_search)):
            hyps[name], s = decode(module, batches, fn, args.beam)
            times[name].append(s)
    same = sum(a == b for a, b in zip(hyps["reference"], hyps["new"]))
    ref, new = statistics.median(times["reference"]), statistics.median(times["new"])
    print(
        f"{len(lines)} sentences, beam {args.beam}, batch {args.batch_size}, {args.threads} threads, "
        f"median of {args.rounds} rounds, malloc={'default' if args.default_malloc else 'keep_freed_memory'}"
    )
    print(f"reference: {ref:.2f} s ({len(lines) / ref:.1f} sentences/s)")
    print(f"new:       {new:.2f} s ({len(lines) / new:.1f} sentences/s)")
    print(f"identical hypotheses: {same} of {len(lines)}")
    print(f"ratio new/reference: {new / ref:.3f} (goal <= 0.5)")
    rows = {
        name: softmax_rows(module, batches, fn, args.beam)
        for name, fn in (("reference", reference_beam_search), ("new", beam_search))
    }
    print(
        f"softmax-layer rows: reference {rows['reference']:,}, new {rows['new']:,} "
        f"(ratio {rows['new'] / rows['reference']:.3f})"
    )
    if same != len(lines):
        raise SystemExit("hypotheses differ")


if __name__ == "__main__":
    main()
