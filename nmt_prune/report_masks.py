"""Report figure ``masks_<group>.png``: where pruning struck in the encoder and decoder matrices
of each group's most pruned job (read from its checkpoint's masks), one panel per matrix."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import torch

from nmt_prune.masks import masks_from_checkpoint
from nmt_prune.report_read import _label, _pruning_rows

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fig_masks(rows, out: Path, max_figures: int = 6) -> list[str]:
    jobs = [r for r in _pruning_rows(rows) if r["_res"].get("checkpoint")]
    best: dict[str, dict] = {}
    for r in jobs:  # per group, its most pruned job
        if _label(r) not in best or r["pct"] > best[_label(r)]["pct"]:
            best[_label(r)] = r
    written, notes = [], []
    for label, r in sorted(best.items())[:max_figures]:
        ckpt = Path(r["_res"]["checkpoint"])
        if not ckpt.is_file():
            notes.append(f"masks {label}: checkpoint {ckpt} not found")
            continue
        masks = masks_from_checkpoint(str(ckpt))
        if masks is None:
            notes.append(f"masks {label}: no masks in {ckpt}")
            continue
        names = [n for n in masks.masks if n.startswith(("encoder.weight", "decoder.")) and "weight" in n]
        if not names:
            notes.append(f"masks {label}: no encoder/decoder matrices were pruned")
            continue
        cols = 4
        nrows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.0 * nrows), squeeze=False)
        for ax, n in zip(axes.flat, names):
            pruned = (~masks.masks[n]).float()
            # at most 256 x 256 cells, each the fraction pruned of its block: downsampling for the
            # screen must neither drop positions (nearest) nor invent them
            size = [min(256, d) for d in pruned.shape]
            cells = torch.nn.functional.adaptive_avg_pool2d(pruned[None, None], size)[0, 0]
            rows, cols = pruned.shape  # axes in real row / column indices, whatever the pooling
            im = ax.imshow(
                cells.numpy(),
                cmap="Greys",
                aspect="auto",
                interpolation="nearest",
                vmin=0,
                vmax=1,
                extent=(0, cols, rows, 0),
            )
            ax.set_title(f"{n}\n{100 * float(pruned.mean()):.1f}% pruned", fontsize=8)
            ax.set_xlabel("input unit", fontsize=7)
            ax.set_ylabel("output unit (gates i,f,g,o)", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        fig.suptitle(f"Pruned positions, {label} at {r['pct']:g}%")
        fig.tight_layout()
        fig.colorbar(im, ax=axes, shrink=0.6, label="fraction pruned (black: all)")
        name = "masks_" + "".join(c if c.isalnum() else "_" for c in label) + ".png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(name)
    if not best:
        notes.append("masks: no pruning job with a checkpoint")
    return written + notes
