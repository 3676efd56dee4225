"""The GPU measured (issue 15 part 3) in one command that fits a device session (<= 10 min):

    make device-data CKPT=/path/to/dense/best.ckpt     # here: Multi30k and a weights-only model
    python bench/gpu.py --data-root device/multi30k --checkpoint device/dense.ckpt --out $OUT/gpu.json

1. training, target tokens/s of the ``small`` and ``see2016`` models on Multi30k batches: the
   project's module through the Lightning Trainer, without and with 90% masks (the mask callback
   every pruned run uses), and a plain PyTorch loop over the same module (cuDNN ``nn.LSTM``
   encoder, hand-written decoder step), each in fp32 and under bf16 autocast;
2. beam-5 decoding of test2016 with the checkpoint's model, fp32 and bf16 autocast: sentences/s,
   and how many hypotheses bf16 leaves identical;
3. several training jobs on one GPU at once (what a sweep gets with the joblib launcher's
   ``n_jobs``): N processes of the ``small`` Trainer loop started together, their summed tokens/s
   against one process alone.

``--device cpu`` (with few ``--steps``) runs the same code on a CPU: how this script is tested
where no GPU is. Prints a table and writes every figure to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from decode_speed import decode  # noqa: E402
from train_throughput import SMALL, _sync, batches_and_state, lightning_loop, make_module, plain_loop  # noqa: E402

from callbacks.masking import MaskedTraining  # noqa: E402
from nmt_prune.data.datamodule import collate  # noqa: E402
from nmt_prune.data.text import encode_source  # noqa: E402
from nmt_prune.masks import MaskSet  # noqa: E402
from nmt_prune.module import NMTModule  # noqa: E402
from nmt_prune.search import beam_search  # noqa: E402

SEE2016 = {**SMALL, "emb_size": 1000, "hidden_size": 1000, "layers": 4, "dropout": 0.2}
MODELS = {"small": SMALL, "see2016": SEE2016}
PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}


def random_masks(state: dict, model: dict, pct: float) -> MaskSet:
    """``pct`` of every weight matrix pruned at random (seeded): the mask callback's cost does
    not depend on which weights are pruned."""
    g = torch.Generator().manual_seed(0)
    params = make_module(state, model).model.named_parameters()
    return MaskSet({n: torch.rand(p.shape, generator=g) >= pct for n, p in params if p.dim() == 2})


def training(args, batches, state) -> list[dict]:
    rows = []
    for name in args.models:
        model = MODELS[name]
        for prec in ("fp32", "bf16"):
            for kind in ("plain", "trainer", "trainer+masks"):
                if kind == "plain":
                    rate = plain_loop(batches, args.warmup, state, False, prec == "bf16", model, args.device)
                else:
                    cbs = [MaskedTraining(random_masks(state, model, 0.9))] if kind == "trainer+masks" else []
                    rate = lightning_loop(
                        batches, args.warmup, state, model, args.device, PRECISION[prec], cbs
                    )
                rows.append({"model": name, "precision": prec, "loop": kind, "tokens_per_s": round(rate)})
                print(f"train {name:8s} {prec} {kind:14s} {rate:9.0f} target tokens/s", flush=True)
    return rows


def test2016_batches(args, module: NMTModule) -> tuple[int, list[dict]]:
    """test2016's source sentences (``--data-root``) encoded with ``module``'s vocabulary, in
    batches of ``--batch-size`` on ``--device``, sorted by length as the translate CLI batches them;
    and their number."""
    lines = Path(args.data_root, "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    enc = [encode_source(module.src_tok, module.src_vocab, x) for x in lines]
    order = sorted(range(len(lines)), key=lambda i: len(enc[i]))
    chunks = [order[s : s + args.batch_size] for s in range(0, len(order), args.batch_size)]
    batches = [collate([(i, enc[i], []) for i in chunk]) for chunk in chunks]
    return len(lines), [
        {k: v.to(args.device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches
    ]


def decoding(args) -> list[dict]:
    module = NMTModule.from_checkpoint(args.checkpoint, map_location=args.device).to(args.device).eval()
    n, batches = test2016_batches(args, module)
    rows, hyps = [], {}
    for prec in ("fp32", "bf16"):
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=prec == "bf16"):
            decode(module, batches[:1], beam_search, 5)  # warm-up (cuDNN plans, allocator)
            _sync(args.device)
            hyps[prec], s = decode(module, batches, beam_search, 5)
            _sync(args.device)
        rows.append({"precision": prec, "seconds": round(s, 2), "sentences_per_s": round(n / s, 1)})
        print(f"decode test2016 beam 5, batch {args.batch_size}, {prec}: {s:.2f} s, {n / s:.0f} sent/s")
    same = sum(a == b for a, b in zip(hyps["fp32"], hyps["bf16"]))
    rows[-1]["identical_to_fp32"] = same
    print(f"bf16 hypotheses identical to fp32: {same} of {n}")
    return rows


def concurrent(args) -> list[dict]:
    """1 and then ``--jobs`` processes of the small model's Trainer loop at once."""
    cmd = [sys.executable, __file__, "--worker", "--device", args.device, "--steps", str(args.steps)]
    cmd += ["--warmup", str(args.warmup)] + (["--data-root", args.data_root] if args.data_root else [])
    rows = []
    for n in (1, args.jobs):
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit(f"a worker failed: return codes {[p.returncode for p in procs]}")
        wall = round(time.perf_counter() - t0, 1)
        rows.append({"processes": n, "tokens_per_s_sum": round(sum(rates)), "wall_s": wall})
        print(
            f"{n} process(es) at once: {sum(rates):9.0f} target tokens/s in all, {[round(r) for r in rates]}"
        )
    rows[-1]["ratio_to_one"] = round(rows[-1]["tokens_per_s_sum"] / rows[0]["tokens_per_s_sum"], 2)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data-root", default=None, help="Multi30k (synthetic batches of its shape without)")
    ap.add_argument("--checkpoint", default=None, help="a model for the decoding part (skipped without)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128, help="decoding batch (evaluation's)")
    ap.add_argument("--jobs", type=int, default=3, help="processes at once for part 3 (0: skip it)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu to test the script)")
    batches, state = batches_and_state(args)
    if args.worker:  # part 3's worker: one Trainer loop, its rate on the last line
        print(lightning_loop(batches, args.warmup, state, SMALL, args.device))
        return
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {args.steps} batches of 64 after {args.warmup} warm-up")
    res = {"device": name, "torch": torch.__version__, "steps": args.steps}
    res["train"] = training(args, batches, state)
    if args.checkpoint:
        res["decode"] = decoding(args)
    if args.jobs:
        res["concurrent"] = concurrent(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
