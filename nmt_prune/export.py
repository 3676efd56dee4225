"""A pruned model in a file that is really smaller (See et al. 2016 sect. 5.3: storage; Han et al.
2016, Deep Compression: sparse storage and codebook quantisation).

    python -m nmt_prune.export CKPT OUT.pt [--values fp32|fp16|int8] [--check DATA_ROOT]

Every parameter is stored in whichever of three layouts is smallest for it:
- ``dense``: all values;
- ``bitmask``: one bit per position (packed, row-major) and the nonzero values;
- ``csr``: int32 row pointers, column indices (int16 when the matrix has at most 32,767 columns,
  else int32) and the nonzero values (2-D parameters only).
The pruned positions are the exact zeros of the weights (masks hold pruned weights at exactly
0), so no mask is needed to rebuild them. Values: ``fp32`` (exact: the reloaded model is the same
model), ``fp16``, or ``int8``: a 256-entry fp32 codebook per parameter from 1-D k-means (Lloyd,
linear initialisation over the values' range, which Han et al. found best because it keeps the
few large weights well represented; Lloyd steps only lower the error of that uniform grid) and one
byte per value (Han et al. 2016 sect. 3). The file also holds
the model config and the vocabularies/tokenisers, counted apart. ``--check`` translates the
test set (Multi30k test2016, beam 5) with the checkpoint and the exported model and says
whether every hypothesis is identical, with both BLEU scores.
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

VALUES = ("fp32", "fp16", "int8")
_VALUE_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
CODEBOOK = 256


def _layout_bytes(shape: tuple[int, ...], nnz: int, values: str) -> dict[str, int]:
    """Bytes of each layout for a parameter of ``shape`` with ``nnz`` nonzeros."""
    n = math.prod(shape)
    book = CODEBOOK * 4 if values == "int8" else 0
    v = _VALUE_BYTES[values]
    out = {"dense": n * v + book, "bitmask": math.ceil(n / 8) + nnz * v + book}
    if len(shape) == 2:
        idx = 2 if shape[1] <= 32767 else 4
        out["csr"] = 4 * (shape[0] + 1) + nnz * (idx + v) + book
    return out


def _codebook(vals: Tensor, iters: int = 15) -> tuple[Tensor, Tensor]:
    """1-D k-means with ``CODEBOOK`` centroids: (codebook fp32, uint8 index per value)."""
    k = min(CODEBOOK, max(1, vals.numel()))
    x = vals.float()
    cent = torch.linspace(float(x.min()), float(x.max()), k)  # linear init: Han et al. 2016 sect. 3.2
    for _ in range(iters):
        cent, _ = torch.sort(cent)
        idx = torch.bucketize(x, (cent[1:] + cent[:-1]) / 2)
        sums = torch.zeros(k).index_add_(0, idx, x)
        counts = torch.zeros(k).index_add_(0, idx, torch.ones_like(x))
        cent = torch.where(counts > 0, sums / counts.clamp(min=1), cent)
    cent, _ = torch.sort(cent)
    idx = torch.bucketize(x, (cent[1:] + cent[:-1]) / 2)
    return torch.cat([cent, cent.new_zeros(CODEBOOK - k)]), idx.to(torch.uint8)


def _encode_values(vals: Tensor, values: str) -> dict[str, Tensor]:
    if values == "fp32":
        return {"v": vals.float().clone()}
    if values == "fp16":
        return {"v": vals.half()}
    book, idx = _codebook(vals)
    return {"book": book, "idx": idx}


def _decode_values(enc: dict[str, Any]) -> Tensor:
    return enc["book"][enc["idx"].long()] if "book" in enc else enc["v"].float()


def encode(t: Tensor, values: str) -> dict[str, Any]:
    """One parameter in its smallest layout."""
    t = t.detach().cpu().float()
    nz = t != 0
    sizes = _layout_bytes(tuple(t.shape), int(nz.sum()), values)
    layout = min(sizes, key=sizes.get)
    enc: dict[str, Any] = {"layout": layout, "shape": list(t.shape), "bytes": sizes[layout]}
    if layout == "dense":
        enc.update(_encode_values(t.flatten(), values))
    elif layout == "bitmask":
        bits = torch.zeros(math.ceil(t.numel() / 8) * 8, dtype=torch.uint8)
        bits[: t.numel()] = nz.flatten().to(torch.uint8)
        weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
        enc["bits"] = (bits.view(-1, 8) * weights).sum(1, dtype=torch.uint8)
        enc.update(_encode_values(t[nz], values))
    else:
        rows, cols = t.shape
        enc["row_ptr"] = torch.cat([torch.zeros(1, dtype=torch.int32), nz.sum(1).cumsum(0).to(torch.int32)])
        col = nz.nonzero()[:, 1]
        enc["col"] = col.to(torch.int16 if cols <= 32767 else torch.int32)
        enc.update(_encode_values(t[nz], values))
    return enc


def decode(enc: dict[str, Any]) -> Tensor:
    shape, layout = enc["shape"], enc["layout"]
    vals = _decode_values(enc)
    if layout == "dense":
        return vals.reshape(shape)
    out = torch.zeros(math.prod(shape))
    if layout == "bitmask":
        weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32)
        bits = (enc["bits"].int().unsqueeze(1) & weights).ne(0).flatten()[: out.numel()]
        out[bits] = vals
        return out.reshape(shape)
    rows, cols = shape
    counts = (enc["row_ptr"][1:] - enc["row_ptr"][:-1]).long()
    row = torch.repeat_interleave(torch.arange(rows), counts)
    out = out.reshape(rows, cols)
    out[row, enc["col"].long()] = vals
    return out


def _model_state(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def export(ckpt: dict[str, Any], values: str = "fp16") -> dict[str, Any]:
    """The export of a loaded run.py checkpoint (``torch.load(..., weights_only=True)``)."""
    if values not in VALUES:
        raise ValueError(f"--values={values!r}; valid choices: {', '.join(VALUES)}")
    params = {k: encode(v, values) for k, v in _model_state(ckpt).items()}
    meta = {"hyper_parameters": ckpt["hyper_parameters"], "data_state": ckpt["data_state"]}
    return {"format": 1, "values": values, **meta, "params": params}


def sizes(state: dict[str, Tensor], classes: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Bytes of the parameters (``state``: name -> tensor, as ``model.named_parameters()``) stored
    densely in fp32 and exported with each value type; per class with ``classes`` (weight class ->
    names). Counted from the layouts' sizes, without encoding (the int8 codebook included)."""
    out: dict[str, Any] = {"dense_fp32": sum(t.numel() * 4 for t in state.values())}
    for values in VALUES:
        b = {
            n: min(_layout_bytes(tuple(t.shape), int((t != 0).sum()), values).values())
            for n, t in state.items()
        }
        out[values] = sum(b.values())
        out[f"{values}_ratio"] = out[values] / out["dense_fp32"]
        if classes:
            out[f"{values}_by_class"] = {c: sum(b[n] for n in ns if n in b) for c, ns in classes.items()}
    return out


def checkpoint_sizes(path: str | Path) -> dict[str, Any]:
    """``sizes`` of a run.py checkpoint's model, per weight class (results.json ``export``)."""
    from nmt_prune.module import NMTModule

    model = NMTModule.from_checkpoint(str(path)).model
    return sizes({n: p.detach() for n, p in model.named_parameters()}, model.weight_classes())


def load(path: str | Path):
    """An exported file -> NMTModule in eval mode (fp32 weights)."""
    from nmt_prune.module import NMTModule

    exp = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(exp, dict) or exp.get("format") != 1:
        raise ValueError(f"{path} is not an nmt_prune.export file")
    module = NMTModule(data_state=exp["data_state"], **exp["hyper_parameters"])
    module.model.load_state_dict({k.removeprefix("model."): decode(v) for k, v in exp["params"].items()})
    return module.eval()


def _nbytes(obj: Any) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def main(argv: list[str] | None = None) -> None:
    from nmt_prune.checkpoints import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("out", type=Path)
    ap.add_argument("--values", default="fp16", choices=VALUES)
    ap.add_argument(
        "--check", metavar="DATA_ROOT", default=None, help="translate test2016 with both and compare"
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint, "checkpoint")
    exp = export(ckpt, args.values)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(exp, args.out)
    state = _model_state(ckpt)
    dense = sum(t.numel() * 4 for t in state.values())
    payload = sum(p["bytes"] for p in exp["params"].values())
    meta = _nbytes({"hyper_parameters": exp["hyper_parameters"], "data_state": exp["data_state"]})
    layouts = {}
    for p in exp["params"].values():
        layouts[p["layout"]] = layouts.get(p["layout"], 0) + 1
    ckpt_bytes = Path(args.checkpoint).stat().st_size
    print(
        f"checkpoint file {ckpt_bytes:,} bytes (weights, optimizer state, ...); fp32 weights {dense:,} bytes"
    )
    print(f"export ({args.values}): weights {payload:,} bytes = {payload / dense:.2%} of the fp32 weights")
    print(
        f"  config + vocabularies {meta:,} bytes; file {args.out.stat().st_size:,} bytes; layouts {layouts}"
    )
    if args.check:
        _check(args.checkpoint, args.out, Path(args.check))


def _check(ckpt_path: str, out: Path, root: Path) -> None:
    from nmt_prune.metrics import bleu_scores
    from nmt_prune.module import NMTModule
    from nmt_prune.translate import translate_lines

    src = (root / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    refs = (root / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    orig, new = NMTModule.from_checkpoint(ckpt_path), load(out)
    with torch.no_grad():
        a, b = translate_lines(orig, src, 5, 128), translate_lines(new, src, 5, 128)
    same = sum(x == y for x, y in zip(a, b))
    ba, bb = (bleu_scores(h, refs, orig.tgt_tok.tokenize)["bleu"] for h in (a, b))
    print(f"test2016, beam 5: {same} of {len(src)} hypotheses identical")
    print(f"BLEU {ba:.2f} (checkpoint) vs {bb:.2f} (export)")


if __name__ == "__main__":
    main()
