"""Translate a text file with a checkpoint: one detokenised hypothesis per input line.

    python -m nmt_prune.translate CHECKPOINT INPUT OUTPUT [--beam 5] [--batch-size 128]
    sacrebleu REFERENCE -i OUTPUT

The checkpoint carries the model, the vocabularies and the tokenisers, so nothing else is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nmt_prune.data.datamodule import collate
from nmt_prune.data.text import encode_source
from nmt_prune.module import NMTModule


def translate_lines(module: NMTModule, lines: list[str], beam_size: int, batch_size: int) -> list[str]:
    """Translate ``lines`` (raw text) in length-sorted batches; output in input order."""
    encoded = [encode_source(module.src_tok, module.src_vocab, x) for x in lines]
    order = sorted(range(len(lines)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(lines)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([(i, encoded[i], []) for i in idx])
        for i, hyp in zip(idx, module.translate_batch(batch, beam_size)):
            out[i] = hyp
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .ckpt written by run.py (checkpoints/best.ckpt)")
    p.add_argument("input", type=Path, help="source text, one sentence per line")
    p.add_argument("output", type=Path, help="where to write detokenised translations")
    p.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.beam < 1:
        p.error(f"--beam must be >= 1, got {args.beam}")
    if not args.input.is_file():
        p.error(f"input file {args.input} does not exist")
    if not Path(args.checkpoint).is_file():
        p.error(f"checkpoint {args.checkpoint} does not exist")
    if not args.output.parent.is_dir():  # before decoding everything, not after
        p.error(f"output directory {args.output.parent} does not exist")
    torch.set_num_threads(args.threads)
    try:
        module = NMTModule.from_checkpoint(args.checkpoint)
    except ValueError as e:
        p.error(str(e))
    try:
        lines = args.input.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        p.error(f"input file {args.input} is not UTF-8 text (byte {e.start}: {e.reason})")
    if lines and lines[-1] == "":
        lines.pop()
    hyps = translate_lines(module, lines, args.beam, args.batch_size)
    args.output.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")  # empty input: empty output


if __name__ == "__main__":
    main()
