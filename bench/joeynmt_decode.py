"""Beam search side by side with JoeyNMT 2.3 (issue 15): sentences/s of each framework's beam-5
search on its own model of the same architecture, trained as long on the same data.

JoeyNMT is not a dependency of this project: install it in a scratch venv that sees this one's
packages (``python -m venv --system-site-packages /tmp/jn && /tmp/jn/bin/pip install
joeynmt==2.3.0 importlib_metadata``, as README "Against JoeyNMT") and run this file with that
venv's python.

    python bench/joeynmt_decode.py train --data-root D --model-dir M --epochs 3 [--threads 1]
    python bench/joeynmt_decode.py decode --model-dir M --ours CKPT [CKPT ...] [--threads 1] [--rounds 3]

``train`` writes bench/joeynmt/multi30k_small.yaml (the ``small`` model in JoeyNMT's terms) with
the paths and epochs filled in to ``M/config.yaml`` and trains it with JoeyNMT's own trainer.
``decode`` loads JoeyNMT's best checkpoint and ours (run.py ``.ckpt`` files: one trained as many
epochs, and any others, e.g. a converged model), decodes test2016 with each framework's search
(beam 5, alpha 1, batches of 128) in alternating rounds in one process, and prints per model:
seconds (median of the rounds), sentences/s, words per hypothesis and cased sacreBLEU. JoeyNMT is
timed twice: batches in file order (its own test/translate CLI) and batches of length-sorted
sentences (what ours does), so the search itself is compared on the same batches.
Only the search calls are timed (encoder included, data loading not; ours includes its
detokenisation, a few ms). Words/hypothesis: each framework's detokenised output split on spaces
(a search with longer hypotheses does more steps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TEMPLATE = Path(__file__).parent / "joeynmt" / "multi30k_small.yaml"


def train(args) -> None:
    model_dir = Path(args.model_dir).resolve()
    text = TEMPLATE.read_text(encoding="utf-8")
    for key, value in (
        ("DATA_ROOT", str(Path(args.data_root).resolve())),
        ("MODEL_DIR", str(model_dir)),
        ("EPOCHS", str(args.epochs)),
    ):
        text = text.replace(key, value)
    cfg = model_dir.with_suffix(".yaml")  # JoeyNMT empties model_dir, then copies it there
    cfg.write_text(text, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "joeynmt", "train", str(cfg)], check=True, env=env)
    print(f"trained {args.epochs} epochs in {time.perf_counter() - t0:.0f} s -> {model_dir}")


def joey_setup(model_dir: Path, batch_size: int, sort: bool):
    """JoeyNMT's model (best checkpoint), its test set and the batches its iterator makes; with
    ``sort`` the test set is first ordered by source length (as ours batches), and ``order`` maps
    each hypothesis back to its line."""
    from joeynmt.config import load_config, parse_global_args
    from joeynmt.prediction import prepare

    cfg = load_config(model_dir / "config.yaml")
    cfg["data"]["dev"] = None  # only test2016 is decoded
    args = parse_global_args(cfg, rank=0, mode="test")  # as `python -m joeynmt test` does
    model, _, _, test = prepare(args, rank=0, mode="test")  # best.ckpt, vocabularies, test set
    model.eval()
    trg_vocab = model.trg_vocab
    src, trg = test.src_lang, test.trg_lang
    order = list(range(len(test.data[src])))
    if sort:
        order.sort(key=lambda i: len(test.data[src][i].split()))
        for lang in (src, trg):
            test.data[lang] = [test.data[lang][i] for i in order]
        test.reset_indices()
    batches = list(
        test.make_iter(
            batch_size=batch_size,
            batch_type="sentence",
            shuffle=False,
            pad_index=model.pad_index,
            eos_index=model.eos_index,
        )
    )
    # JoeyNMT's predict sorts each batch by source length in place before its search and puts the
    # outputs back in order: done once here, since a batch sorted twice would lose its order
    reverse = [batch.sort_by_src_length() for batch in batches]
    return model, test.tokenizer[trg], trg_vocab, list(zip(batches, reverse)), order


def joey_decode(model, batches, beam: int, alpha: float):
    from joeynmt.search import search

    out = []
    t0 = time.perf_counter()
    for batch, reverse in batches:
        ids, _, _ = search(model, batch, max_output_length=-1, beam_size=beam, beam_alpha=alpha, n_best=1)
        out.extend(ids[reverse].tolist())
    return out, time.perf_counter() - t0


def joey_strings(out, tok, trg_vocab, order):
    sents = trg_vocab.arrays_to_sentences(arrays=out, cut_at_eos=True, skip_pad=True)
    hyps = [""] * len(order)
    for i, words in zip(order, sents):
        hyps[i] = tok.post_process(words)
    return hyps


def ours_setup(ckpt: str, data_root: str, batch_size: int):
    from nmt_prune.data.datamodule import collate
    from nmt_prune.data.text import encode_source
    from nmt_prune.module import NMTModule

    module = NMTModule.from_checkpoint(ckpt)
    lines = Path(data_root, "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    enc = [encode_source(module.src_tok, module.src_vocab, x) for x in lines]
    order = sorted(range(len(lines)), key=lambda i: len(enc[i]))  # as the translate CLI batches
    batches = [
        collate([(i, enc[i], []) for i in order[s : s + batch_size]])
        for s in range(0, len(order), batch_size)
    ]
    return module, batches, order


def ours_decode(module, batches, beam: int):
    """Our search as every validation and translate run calls it (ids, then detokenised)."""
    out = []
    t0 = time.perf_counter()
    for b in batches:
        out.extend(module.translate_batch(b, beam))
    return out, time.perf_counter() - t0


def ours_strings(out, order):
    hyps = [""] * len(order)
    for i, hyp in zip(order, out):
        hyps[i] = hyp
    return hyps


def decode(args) -> None:
    import sacrebleu
    import torch

    from nmt_prune.runtime import keep_freed_memory

    keep_freed_memory()  # as run.py and translate run (glibc keeps freed tensors): both searches
    torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir)
    refs = Path(args.data_root, "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    runs = {}
    for name, sort in (("joeynmt, file order", False), ("joeynmt, length-sorted", True)):
        model, tok, vocab, batches, order = joey_setup(model_dir, args.batch_size, sort)
        runs[name] = (
            lambda m=model, b=batches: joey_decode(m, b, args.beam, 1.0),
            lambda out, t=tok, v=vocab, o=order: joey_strings(out, t, v, o),
        )
    for k, ckpt in enumerate(args.ours, 1):
        module, batches, order = ours_setup(ckpt, args.data_root, args.batch_size)
        runs[f"nmt-prune, model {k}"] = (
            lambda m=module, b=batches: ours_decode(m, b, args.beam),
            lambda out, o=order: ours_strings(out, o),
        )
    times = {name: [] for name in runs}
    outs = {}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, (run, _) in runs.items():
                outs[name], s = run()
                times[name].append(s)
    print(
        f"{len(refs)} sentences, beam {args.beam}, batch {args.batch_size}, "
        f"{args.threads} threads, median of {args.rounds} rounds"
    )
    for name, (_, strings) in runs.items():
        hyps = strings(outs[name])
        words = statistics.mean(len(h.split()) for h in hyps)  # detokenised, both alike
        sec = statistics.median(times[name])
        bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
        print(
            f"{name:24s} {sec:6.2f} s  {len(hyps) / sec:6.1f} sentences/s  "
            f"{words:5.2f} words/hypothesis  BLEU {bleu:5.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train JoeyNMT's model with bench/joeynmt/multi30k_small.yaml")
    t.add_argument("--data-root", default="../shared/data/multi30k")
    t.add_argument("--model-dir", required=True)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--threads", type=int, default=1)
    d = sub.add_parser("decode", help="time both searches on test2016 in one process")
    d.add_argument("--data-root", default="../shared/data/multi30k")
    d.add_argument("--model-dir", required=True)
    d.add_argument(
        "--ours",
        required=True,
        nargs="+",
        help="run.py .ckpt files (model 1, 2, ...)",
    )
    d.add_argument("--beam", type=int, default=5)
    d.add_argument("--batch-size", type=int, default=128)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    train(args) if args.cmd == "train" else decode(args)


if __name__ == "__main__":
    main()
