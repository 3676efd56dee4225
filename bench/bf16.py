"""bf16 on the CPU (Lightning's ``trainer.precision=bf16-mixed`` is CPU autocast to bfloat16):
training tokens/s and beam-5 decoding of test2016, fp32 vs bf16 autocast, in one process.

    python bench/bf16.py CHECKPOINT --data-root ../shared/data/multi30k [--threads 2] [--steps 40]

Training: the ``small`` model's training step (the module's loss, Adam, clip 5) on Multi30k
training batches, fp32 and bf16 in alternating rounds (drifts in machine speed hit both).
Decoding: the test set with ``CHECKPOINT``'s model (a converged dense model) in fp32 and under
autocast: sentences/s, how many hypotheses are identical and the cased BLEU of each. On a CPU
without AMX / AVX512-BF16 expect bf16 to be slower: the flags this CPU has are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from decode_speed import decode  # noqa: E402
from train_throughput import batches_and_state, plain_loop  # noqa: E402

from nmt_prune.data.datamodule import collate  # noqa: E402
from nmt_prune.data.text import encode_source  # noqa: E402
from nmt_prune.metrics import bleu_scores  # noqa: E402
from nmt_prune.module import NMTModule  # noqa: E402
from nmt_prune.search import beam_search  # noqa: E402


def cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "unknown"
    return (
        " ".join(f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags) or "none of the bf16 ones"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data-root", default="../shared/data/multi30k")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads}, CPU bf16 flags: {cpu_flags()}")
    batches, state = batches_and_state(args)
    tok = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for name in tok:
            tok[name].append(plain_loop(batches, args.warmup, state, naive=False, bf16=name == "bf16"))
    t32, t16 = statistics.median(tok["fp32"]), statistics.median(tok["bf16"])
    print(f"training: fp32 {t32:.0f} tok/s, bf16 {t16:.0f} tok/s, speed ratio bf16/fp32 {t16 / t32:.2f}")

    module = NMTModule.from_checkpoint(args.checkpoint).eval()
    src = Path(args.data_root, "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    refs = Path(args.data_root, "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    enc = [encode_source(module.src_tok, module.src_vocab, x) for x in src]
    order = sorted(range(len(src)), key=lambda i: len(enc[i]))
    bs = args.batch_size
    dec_batches = [collate([(i, enc[i], []) for i in order[s : s + bs]]) for s in range(0, len(order), bs)]
    out, secs = {}, {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for name in secs:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
                out[name], s = decode(module, dec_batches, beam_search, 5)
            secs[name].append(s)
    same = sum(a == b for a, b in zip(out["fp32"], out["bf16"]))
    inv = {i: k for k, i in enumerate(order)}
    for name in secs:
        hyps = [
            module.tgt_tok.detokenize(module.tgt_vocab.decode(out[name][inv[i]])) for i in range(len(src))
        ]
        bleu = bleu_scores(hyps, refs, module.tgt_tok.tokenize)["bleu"]
        s = statistics.median(secs[name])
        print(f"decoding {name}: {len(src) / s:.1f} sentences/s, test2016 BLEU {bleu:.2f}")
    speed = statistics.median(secs["fp32"]) / statistics.median(secs["bf16"])
    print(f"decoding speed ratio bf16/fp32 {speed:.2f}; identical hypotheses {same} of {len(src)}")


if __name__ == "__main__":
    main()
