"""Where a trained model keeps its large weights, by See et al.'s weight class: what class-blind
magnitude pruning will take from each class, and how far training moved each class from theta_0.

    python -m nmt_prune.magnitudes CHECKPOINT [CHECKPOINT ...] [--pct 80 90]

Per class (its weights, no biases, as the study prunes): the median |w|; the share of the class
that class-blind magnitude pruning keeps at each ``--pct`` (computed with ``allocation.allocate``,
the allocation the pruner itself runs, so it is the mask a job would get); and, when the
checkpoint's directory holds the dense cache's ``theta0.pt``, the median |w - w_0|. This is the
evidence of docs/study.md finding 11: Adam moves every class ~3x its init scale alike, See et
al.'s SGD leaves the embeddings near their U(-0.1, 0.1) draw, so class-blind pruning takes the
embeddings under SGD and the softmax layer under Adam.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nmt_prune.allocation import allocate, prunable_classes
from nmt_prune.checkpoints import load_checkpoint
from nmt_prune.model import Seq2Seq
from nmt_prune.saliency import magnitude


def _weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's parameters by name, from a Lightning checkpoint (``model.`` prefix) or theta0.pt."""
    return {k.removeprefix("model."): v for k, v in state.items()}


def class_table(
    params: dict[str, torch.Tensor],
    classes: dict[str, list[str]],
    pcts: list[float],
    theta0: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """class -> {"weights", "median_abs", "kept@P" (a share, per pct), "median_moved"} over the
    prunable weights of ``classes`` (``prunable_classes``: weights, no biases)."""
    prunable = prunable_classes(classes, {k: v.shape for k, v in params.items()})
    names = [n for ns in prunable.values() for n in ns]
    table: dict[str, dict[str, float]] = {}
    for c, ns in prunable.items():
        w = torch.cat([params[n].flatten() for n in ns])
        table[c] = {"weights": w.numel(), "median_abs": w.abs().median().item()}
        if theta0 is not None:
            w0 = torch.cat([theta0[n].flatten() for n in ns])
            table[c]["median_moved"] = (w - w0).abs().median().item()
    scores = magnitude({n: params[n] for n in names})
    for pct in pcts:
        masks = allocate(scores, prunable, pct / 100, "blind")
        for c, ns in prunable.items():
            table[c][f"kept@{pct:g}"] = sum(int(masks[n].sum()) for n in ns) / table[c]["weights"]
    return table


def of_checkpoint(path: Path, pcts: list[float]) -> dict[str, dict[str, float]]:
    params = _weights(load_checkpoint(str(path), "CHECKPOINT")["state_dict"])
    model = Seq2Seq(
        params["src_embed.weight"].shape[0],
        params["generator.weight"].shape[0],
        emb_size=params["src_embed.weight"].shape[1],
        hidden_size=params["attn_out.weight"].shape[0],
        layers=sum(1 for k in params if k.startswith("encoder.weight_ih_l")),
        attention="general" if "attn_in.weight" in params else "dot",
    )
    t0_path = path.parent / "theta0.pt"
    theta0 = None
    if t0_path.is_file():
        t0 = torch.load(t0_path, map_location="cpu", weights_only=True)
        theta0 = _weights(t0.get("state_dict", t0))
    return class_table(params, model.weight_classes(), pcts, theta0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--pct", nargs="+", type=float, default=[80.0, 90.0])
    a = ap.parse_args(argv)
    for path in a.checkpoints:
        try:
            table = of_checkpoint(path, a.pct)
        except (FileNotFoundError, ValueError) as e:  # a wrong path or not a run.py checkpoint
            raise SystemExit(f"error: {e}") from None
        moved = all("median_moved" in r for r in table.values())
        print(f"{path}")
        head = ["class", "weights", "median |w|", *(f"blind {p:g}% keeps" for p in a.pct)]
        print("  " + " | ".join(head + (["median |w - w0|"] if moved else [])))
        for c, r in table.items():
            cells = [c, f"{r['weights']:,}", f"{r['median_abs']:.4f}"]
            cells += [f"{100 * r[f'kept@{p:g}']:.1f}%" for p in a.pct]
            cells += [f"{r['median_moved']:.4f}"] if moved else []
            print("  " + " | ".join(cells))


if __name__ == "__main__":
    main()
