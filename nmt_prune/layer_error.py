"""How far pruning moves each layer's output on real activations (Qian & Klabjan's quantity; the
error layer-wise OBS minimises): for every pruned matrix W -> W', the relative output error

    e(W) = ||W X - W' X||_F / ||W X||_F,

X the matrix's inputs over the real (non-padding) positions of a sample of sentences, taken from
the *dense* model in eval mode (dropout off): what the layer saw before pruning. Per weight class
the errors combine as sqrt(sum ||W X - W' X||^2 / sum ||W X||^2) over its matrices. Embeddings
have no input: their "output" is the row of each token, so X is the one-hot tokens and e is the
relative change of the looked-up vectors.

``layer_inputs`` re-runs the model step by step to record each matrix's inputs (the encoder LSTM
layer by layer, the decoder's cells, attention and softmax layer), teacher-forced;
tests/test_layer_error.py checks that this re-run reproduces the model's own outputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nmt_prune.data.datamodule import collate
from nmt_prune.model import Seq2Seq, _lstm_gates


def _lstm_layer(x: Tensor, lens: Tensor, w_ih: Tensor, w_hh: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM layer over (B, S, in) from zero state: outputs (B, S, H) and h_{t-1} (B, S, H)."""
    B, S, _ = x.shape
    H = w_hh.shape[1]
    h, c = x.new_zeros(B, H), x.new_zeros(B, H)
    outs, prev = [], []
    pre = x @ w_ih.t() + b
    for t in range(S):
        prev.append(h)
        h_new, c_new = _lstm_gates(pre[:, t] + h @ w_hh.t(), c)
        alive = (t < lens).unsqueeze(1)  # padded steps keep the state (packed-sequence semantics)
        h, c = torch.where(alive, h_new, h), torch.where(alive, c_new, c)
        outs.append(h_new)
    return torch.stack(outs, 1), torch.stack(prev, 1)


@torch.no_grad()
def layer_inputs(model: Seq2Seq, batches: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Parameter name -> its inputs (N, in) over the real positions of ``batches``; embeddings ->
    the token ids (N,). Eval mode (no dropout)."""
    was = model.training
    model.eval()
    rows: dict[str, list[Tensor]] = {}

    def add(name: str, x: Tensor, real: Tensor) -> None:
        rows.setdefault(name, []).append(x[real])

    for b in batches:
        src, lens, tgt_in = b["src"], b["src_len"], b["tgt_in"]
        s_real, t_real = src != model.pad_id, tgt_in != model.pad_id
        add("src_embed.weight", src, s_real)
        add("tgt_embed.weight", tgt_in, t_real)
        x = model.src_embed(model.read_order(src, lens))  # as encode reads it (pads stay put)
        for k in range(model.layers):
            w_ih, w_hh = getattr(model.encoder, f"weight_ih_l{k}"), getattr(model.encoder, f"weight_hh_l{k}")
            bias = getattr(model.encoder, f"bias_ih_l{k}") + getattr(model.encoder, f"bias_hh_l{k}")
            out, prev = _lstm_layer(x, lens, w_ih, w_hh, bias)
            add(f"encoder.weight_ih_l{k}", x, s_real)
            add(f"encoder.weight_hh_l{k}", prev, s_real)
            x = out
        memory = x.masked_fill(~s_real.unsqueeze(2), 0.0)
        if model.attn_in is not None:
            add("attn_in.weight", memory, s_real)
        state = model.encode(src, lens)  # the model's own initial state, keys and mask
        emb = model.tgt_embed(tgt_in)
        hs, cs, feed = list(state.h), list(state.c), state.feed
        for t in range(tgt_in.shape[1]):
            real = t_real[:, t]
            inp = torch.cat([emb[:, t], feed], 1) if model.input_feeding else emb[:, t]
            for k, cell in enumerate(model.decoder):
                add(f"decoder.{k}.weight_ih", inp, real)
                add(f"decoder.{k}.weight_hh", hs[k], real)
                gates = inp @ cell.weight_ih.t() + hs[k] @ cell.weight_hh.t() + cell.bias_ih + cell.bias_hh
                hs[k], cs[k] = _lstm_gates(gates, cs[k])
                inp = hs[k]
            scores = (inp.unsqueeze(1) @ state.keys.transpose(1, 2)).squeeze(1) + state.mask_bias
            context = (scores.softmax(-1).unsqueeze(1) @ state.memory).squeeze(1)
            cat = torch.cat([context, inp], 1)
            add("attn_out.weight", cat, real)
            feed = torch.tanh(model.attn_out(cat))
            add("generator.weight", feed, real)
    model.train(was)
    return {n: torch.cat(v) for n, v in rows.items()}


def relative_errors(
    dense: dict[str, Tensor],
    pruned: dict[str, Tensor],
    inputs: dict[str, Tensor],
    classes: dict[str, list[str]],
) -> dict[str, dict[str, float]]:
    """Per pruned matrix and per class: the relative output error (module docstring).
    ``dense``/``pruned``: parameter name -> weights; only matrices that pruning changed count."""
    sq: dict[str, tuple[float, float]] = {}
    for name, x in inputs.items():
        w, w2 = dense[name].float(), pruned[name].float()
        if torch.equal(w, w2):
            continue
        if x.dtype == torch.long:  # embeddings: the rows the tokens look up
            ref, diff = w[x], (w - w2)[x]
        else:
            ref, diff = x.float() @ w.t(), x.float() @ (w - w2).t()
        sq[name] = (float(diff.pow(2).sum()), float(ref.pow(2).sum()))
    by_class = {}
    for cls, names in classes.items():
        num = sum(sq[n][0] for n in names if n in sq)
        den = sum(sq[n][1] for n in names if n in sq)
        if den > 0:
            by_class[cls] = math.sqrt(num / den)
    return {
        "by_matrix": {n: math.sqrt(a / b) if b > 0 else 0.0 for n, (a, b) in sq.items()},
        "by_class": by_class,
    }


#: validation sentences the inputs are taken from (the first ones of the split)
SENTENCES = 256


def snapshot(model: Seq2Seq, dm, sentences: int = SENTENCES) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Before pruning: the dense weights and every matrix's inputs on the first ``sentences``
    validation sentences."""
    val = dm.splits["val"]
    n = min(sentences, len(val.src))
    batches = [
        collate([(i, val.src[i], val.tgt[i]) for i in range(s, min(s + 64, n))]) for s in range(0, n, 64)
    ]
    device = next(model.parameters()).device
    batches = [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in b.items()} for b in batches]
    dense = {k: p.detach().clone() for k, p in model.named_parameters()}
    return dense, layer_inputs(model, batches)


def errors_after(snap: tuple[dict[str, Tensor], dict[str, Tensor]], model: Seq2Seq) -> dict[str, object]:
    """After pruning: results.json ``layer_error`` (by matrix, by class, the sentences used)."""
    dense, inputs = snap
    pruned = {k: p.detach() for k, p in model.named_parameters()}
    out = relative_errors(dense, pruned, inputs, model.weight_classes())
    return {
        **out,
        "tokens": {
            "source": int(inputs["src_embed.weight"].numel()),
            "target": int(inputs["tgt_embed.weight"].numel()),
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Layer error per class and val perplexity of a dense checkpoint magnitude-pruned (no
    retraining) by each scheme at each percentage: ``python -m nmt_prune.layer_error CKPT
    --data-root ../shared/data/multi30k --pct 50,80,90 --scheme blind,uniform,distribution``."""
    import argparse

    from nmt_prune.allocation import allocate, class_std, prunable_classes
    from nmt_prune.data.datamodule import DataConfig, NMTDataModule
    from nmt_prune.module import NMTModule

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--pct", default="50,80,90")
    ap.add_argument("--scheme", default="blind,uniform,distribution")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    module = NMTModule.from_checkpoint(args.checkpoint)
    splits = {"train": "train", "val": "val", "test": "test_2016_flickr"}  # as conf/data/multi30k.yaml
    langs = {"src_lang": "en", "tgt_lang": "de"}
    cfg = DataConfig(
        name="multi30k", root=args.data_root, **langs, min_freq=2, max_len=80, splits=splits, download=False
    )
    dm = NMTDataModule(cfg, ".cache")
    dm.setup()
    if dm.state()["tgt_vocab"] != module.data_state["tgt_vocab"]:
        raise SystemExit(f"{args.checkpoint}: its vocabulary is not the one these data settings build")
    model = module.model
    snap = snapshot(model, dm)
    dense = snap[0]
    classes = prunable_classes(model.weight_classes(), {n: p.shape for n, p in dense.items()})
    names = [n for ns in classes.values() for n in ns]
    scores = {n: dense[n].abs() for n in names}  # magnitude (See et al.)

    print(f"dense val ppl {module.split_ppl(dm.val_dataloader()):.3f}; inputs from {SENTENCES} val sentences")
    cls_names = list(model.weight_classes())
    print("scheme pct val_ppl " + " ".join(cls_names))
    for scheme in args.scheme.split(","):
        scale = class_std(dense, classes) if scheme == "distribution" else None
        for pct in (float(p) for p in args.pct.split(",")):
            keep = allocate(scores, classes, pct / 100, scheme, scale)
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(dense[n] * keep[n] if n in keep else dense[n])
            err = errors_after(snap, model)["by_class"]
            row = " ".join(f"{err.get(c, 0.0):.3f}" for c in cls_names)
            print(f"{scheme} {pct:g} {module.split_ppl(dm.val_dataloader()):.2f} {row}")
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(dense[n])


if __name__ == "__main__":
    main()
