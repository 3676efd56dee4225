"""Report figure: dead capacity (nmt_prune/dead.py) against sparsity, one panel per weight class.

``dead_capacity.png``: per class, the fraction of its units with no surviving weight (words for
embeddings and the softmax layer, gate units for LSTM layers, h~ units for attention), and the
share of training target tokens whose softmax row is empty; one line per method/scheme, medians
over seeds. It explains a collapse that the sparsity alone does not.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TOKEN_SHARE = "softmax_dead_token_share"


def _series(rows: list[dict[str, Any]], value) -> dict[str, tuple[list[float], list[float]]]:
    """group -> (pcts, median over seeds of ``value(result)``) for the rows where it is defined."""
    by: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = value(r["_res"])
        if v is not None:
            by[r["group"]][float(r["pct"])].append(v)
    return {g: (sorted(d), [statistics.median(d[p]) for p in sorted(d)]) for g, d in sorted(by.items())}


def fig_dead_capacity(rows: list[dict[str, Any]], out: Path) -> list[str]:
    jobs = [r for r in rows if r["status"] == "ok" and isinstance(r["_res"].get("dead"), dict)]
    jobs = [r for r in jobs if isinstance(r["pct"], (int, float)) and r["pct"] > 0]
    if not jobs:
        return ["dead_capacity: no pruned jobs with dead-capacity figures (results.json `dead`)"]
    classes = list(dict.fromkeys(c for r in jobs for c in r["_res"]["dead"]["by_class"]))
    panels = [*classes, TOKEN_SHARE]
    cols = 3
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        if panel == TOKEN_SHARE:
            series = _series(jobs, lambda res: res["dead"].get(TOKEN_SHARE))
            title = "training target tokens whose softmax row is empty"
        else:
            series = _series(
                jobs, lambda res, c=panel: (res["dead"]["by_class"].get(c) or {}).get("fraction")
            )
            units = next(r["_res"]["dead"]["by_class"][panel]["units"] for r in jobs
                         if panel in r["_res"]["dead"]["by_class"])  # fmt: skip
            title = f"{panel}: {units} with no weight left"
        for i, (group, (xs, ys)) in enumerate(series.items()):
            ax.plot(
                xs, [100 * y for y in ys], "osD^vP*"[i % 7] + "-", color=f"C{i % 10}", mfc="none", label=group
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sparsity (%)", fontsize=8)
        ax.set_ylabel("%", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8)
    fig.suptitle("Dead capacity: rows and units a mask leaves empty (median over seeds)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(out / "dead_capacity.png", dpi=110)
    plt.close(fig)
    return ["dead_capacity.png"]
