"""The decoder step compiled (issue 15 part 3): does ``torch.compile`` of ``Seq2Seq._step`` (the
hand-written LSTM + attention step, ~25 small kernels forward per target position) pay?

    python bench/compile_step.py --device cuda --data-root device/multi30k --checkpoint device/dense.ckpt

In one process, with the same weights and batches: training target tokens/s of a plain loop
(Adam, clip 5; the ``small`` model) with the eager step and with the step compiled in each
``--modes`` (``default``; ``reduce-overhead`` adds CUDA graphs), after ``--warmup`` batches that
include the compilation; and, with ``--checkpoint``, beam-5 decoding of test2016 eager vs
compiled: seconds and how many hypotheses are identical. Before timing, one batch without dropout
checks that the compiled step gives the eager loss and gradients (to float tolerance). A mode that
fails prints its error and the rest goes on. ``--device cpu`` runs the same code (how it is tested).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from decode_speed import decode  # noqa: E402
from gpu import test2016_batches  # noqa: E402
from train_throughput import SMALL, _sync, batches_and_state, make_module, plain_loop  # noqa: E402

from nmt_prune.module import NMTModule  # noqa: E402
from nmt_prune.search import beam_search  # noqa: E402


def compiled(model, mode: str | None, backend: str):
    """``model`` with its step compiled (an instance attribute shadows the method), or as it is.
    ``backend``: torch.compile's; ``eager`` traces with Dynamo only (how the CPU test runs it)."""
    if mode:
        model._step = torch.compile(model._step, dynamic=True, mode=mode, backend=backend)
    return model


def same_loss_and_grads(state: dict, batch: dict, mode: str, device: str, backend: str) -> float:
    """Largest gradient difference, eager vs compiled, dropout off; raises if the loss differs."""
    out = []
    for m in (None, mode):
        module = make_module(state, {**SMALL, "dropout": 0.0}).train().to(device)
        compiled(module.model, m, backend)
        loss = module.nll(batch, 0.0) / batch["ntok"]
        loss.backward()
        out.append((loss.detach(), {n: p.grad for n, p in module.named_parameters()}))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-4, atol=1e-5)
    return max(float((out[1][1][n] - g).abs().max()) for n, g in out[0][1].items())


def train_rate(args, state: dict, batches: list[dict], mode: str | None) -> float:
    """The plain loop of train_throughput.py (the module's loss), the step compiled in ``mode``."""
    prepare = lambda m: compiled(m.model, mode, args.backend)  # noqa: E731
    return plain_loop(batches, args.warmup, state, False, device=args.device, prepare=prepare)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data-root", default=None, help="Multi30k (synthetic batches of its shape without)")
    ap.add_argument("--checkpoint", default=None, help="a model for decoding (needs --data-root)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20, help="batches before timing (compilation in them)")
    ap.add_argument("--batch-size", type=int, default=128, help="decoding batch")
    ap.add_argument("--modes", nargs="+", default=["default", "reduce-overhead"])
    ap.add_argument("--backend", default="inductor", help="torch.compile's backend")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    batches, state = batches_and_state(args)
    batches = [{k: v.to(args.device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
    res: dict = {
        "backend": args.backend,
        "device": args.device,
        "torch": torch.__version__,
        "train": {},
        "decode": {},
    }
    eager = res["train"]["eager"] = train_rate(args, state, batches, None)
    print(f"train eager: {eager:9.0f} target tokens/s", flush=True)
    for mode in args.modes:
        try:
            diff = same_loss_and_grads(state, batches[0], mode, args.device, args.backend)
            rate = train_rate(args, state, batches, mode)
            res["train"][mode] = {"tokens_per_s": rate, "ratio": rate / eager, "max_grad_diff": diff}
            print(
                f"train {mode}: {rate:9.0f} target tokens/s, {rate / eager:.2f}x eager; "
                f"same loss, grads within {diff:.1e}"
            )
        except Exception as e:  # noqa: BLE001 - a mode that fails is a result: say so, go on
            res["train"][mode] = {"error": f"{type(e).__name__}: {e}"[:500]}
            print(
                f"train {mode}: FAILED {type(e).__name__}: {e}"[:800] + "\n" + traceback.format_exc()[-1500:]
            )
    if args.checkpoint and args.data_root:
        hyps, batches_t = {}, None
        for mode in [None, *args.modes]:
            name = mode or "eager"
            try:  # a fresh module per mode: compiling replaces its step
                module = NMTModule.from_checkpoint(args.checkpoint, map_location=args.device)
                module = module.to(args.device).eval()
                if batches_t is None:
                    n, batches_t = test2016_batches(args, module)
                compiled(module.model, mode, args.backend)
                decode(module, batches_t[:2], beam_search, 5)  # warm-up: compilation
                _sync(args.device)
                hyps[name], s = decode(module, batches_t, beam_search, 5)
                _sync(args.device)
                same = sum(a == b for a, b in zip(hyps[name], hyps["eager"]))
                res["decode"][name] = {"seconds": s, "sentences_per_s": n / s, "identical_to_eager": same}
                print(f"decode test2016 beam 5 {name}: {s:.2f} s, {n / s:.0f} sent/s, {same}/{n} as eager")
            except Exception as e:  # noqa: BLE001
                res["decode"][name] = {"error": f"{type(e).__name__}: {e}"[:500]}
                print(f"decode {name}: FAILED {type(e).__name__}: {e}"[:800])
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
