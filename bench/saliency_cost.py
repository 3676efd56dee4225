"""Cost of the data-based saliency criteria vs training steps over the same sentences, one process.

    python bench/saliency_cost.py [--data-root ../shared/data/multi30k] [--batches 4] [--threads 2]

On the ``small`` model (2x256) with Multi30k batches of 64 (or synthetic ones of Multi30k's
shape), times over the same ``--batches`` batches:
- training: forward, backward, clip, Adam step per batch (the unit of the ratios);
- OBD ``fisher`` and ``ggn_mc``: one forward/backward per sentence (per-example gradients);
- SNIP: one forward/backward per batch, gradients summed.
Prints seconds and the ratio to the training time over the same sentences.
"""

from __future__ import annotations

import argparse
import time

import torch
from train_throughput import batches_and_state, make_module

from nmt_prune.data.datamodule import collate
from nmt_prune.data.text import PAD_ID
from nmt_prune.runtime import keep_freed_memory
from nmt_prune.saliency import obd, snip


def singles(batch: dict) -> list[dict]:
    """A padded batch -> batches of one sentence each (no padding)."""
    out = []
    for b in range(batch["src"].shape[0]):
        src = batch["src"][b, : int(batch["src_len"][b])].tolist()
        tgt = batch["tgt_out"][b][batch["tgt_out"][b] != PAD_ID].tolist()[:-1]  # drop EOS
        out.append(collate([(b, src, tgt)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    args.steps, args.warmup = args.batches, 1
    batches, state = batches_and_state(args)
    warm, batches = batches[0], batches[1:]
    module = make_module(state).train()
    names = [n for n, p in module.model.named_parameters() if p.dim() == 2]
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def train(bs):
        for b in bs:
            loss = module.nll(b, 0.0) / b["ntok"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            opt.step()

    train([warm])
    t0 = time.perf_counter()
    train(batches)
    t_train = time.perf_counter() - t0
    examples = [s for b in batches for s in singles(b)]
    n_sent = len(examples)
    print(
        f"threads {args.threads}, {len(batches)} batches, {n_sent} sentences, "
        f"{sum(b['ntok'] for b in batches)} target tokens"
    )
    print(f"{'training steps':>16}: {t_train:7.2f} s  (1.00)")
    for est in ("fisher", "ggn_mc"):
        t0 = time.perf_counter()
        obd(module.model, names, examples, est)
        t = time.perf_counter() - t0
        per = 1000 * t / n_sent
        print(f"{'OBD ' + est:>16}: {t:7.2f} s  ({t / t_train:.2f} x training; {per:.1f} ms/sentence)")
    t0 = time.perf_counter()
    snip(module.model, names, batches)
    t = time.perf_counter() - t0
    print(f"{'SNIP':>16}: {t:7.2f} s  ({t / t_train:.2f} x training)")


if __name__ == "__main__":
    main()
