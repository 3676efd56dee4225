"""Cost of holding masks: one training step with masks at 90% vs the same dense step, one process.

    python bench/mask_overhead.py [--data-root ../shared/data/multi30k] [--steps 40] [--threads 2]

The masked step is the dense step plus what MaskedTraining adds: ``mask_grads`` before the
optimizer step and the re-zeroing post-hook after it (class-blind magnitude masks, 90%, over
every weight matrix, embeddings included). Dense and masked rounds alternate over the same
batches so drifts in machine speed hit both equally. Prints ms/step of both and the ratio
(goal: at most 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from train_throughput import batches_and_state, make_module

from nmt_prune.pruner import Pruner
from nmt_prune.runtime import keep_freed_memory


def step_time(module, opt, batches, masks) -> float:
    """Mean seconds per training step over ``batches``."""
    t0 = time.perf_counter()
    for b in batches:
        loss = module.nll(b, 0.0) / b["ntok"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if masks is not None:
            masks.mask_grads(module.model)
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        opt.step()  # masked: the post-hook re-zeroes pruned weights
    return (time.perf_counter() - t0) / len(batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amount", type=float, default=0.9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    batches, state = batches_and_state(args)
    dense, masked = make_module(state).train(), make_module(state).train()
    masks = Pruner("magnitude", "blind", args.amount).compute_masks(masked.model)
    masks.apply(masked.model)
    opt_d = torch.optim.Adam(dense.parameters(), lr=1e-3)
    opt_m = torch.optim.Adam(masked.parameters(), lr=1e-3)
    masks.attach(masked.model, opt_m)
    step_time(dense, opt_d, batches[: args.warmup], None)
    step_time(masked, opt_m, batches[: args.warmup], masks)
    td, tm = [], []
    for _ in range(args.rounds):
        td.append(step_time(dense, opt_d, batches[args.warmup :], None))
        tm.append(step_time(masked, opt_m, batches[args.warmup :], masks))
    d, m = statistics.median(td), statistics.median(tm)
    zeros = sum(int((p == 0).sum()) for n, p in masked.model.named_parameters() if n in masks.masks)
    frac = zeros / masks.n_masked()
    print(
        f"threads {args.threads}, {args.steps} steps x {args.rounds} rounds, "
        f"{masks.n_masked():,} masked weights, {frac:.4f} zero after training"
    )
    print(f"dense  step: {1000 * d:.1f} ms (rounds: {', '.join(f'{1000 * t:.1f}' for t in td)})")
    print(f"masked step: {1000 * m:.1f} ms (rounds: {', '.join(f'{1000 * t:.1f}' for t in tm)})")
    print(f"ratio masked/dense: {m / d:.3f}")


if __name__ == "__main__":
    main()
