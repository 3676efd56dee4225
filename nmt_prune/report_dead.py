"""Report figures per weight class against sparsity: dead capacity (nmt_prune/dead.py) and the layer
error (nmt_prune/layer_error.py), and the layer error next to the class sensitivity.

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

from nmt_prune.names import EMBEDDING_CLASSES  # noqa: E402
from nmt_prune.report_plot import finish  # noqa: E402

TOKEN_SHARE = "softmax_dead_token_share"
EMBED_SHARE = "embed_dead_token_share"


def _series(rows: list[dict[str, Any]], value) -> dict[str, tuple[list[float], list[float]]]:
    """group -> (pcts, median over seeds of ``value(result)``) for the rows where it is defined."""
    by: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = value(r["_res"])
        if v is not None:
            by[r["group"]][float(r["pct"])].append(v)
    return {g: (sorted(d), [statistics.median(d[p]) for p in sorted(d)]) for g, d in sorted(by.items())}


def _panels(jobs, panels, out: Path, name: str, title: str, ylabel: str, scale: float = 1.0) -> None:
    """One panel per (panel title, value function of a result): a line per group vs sparsity."""
    cols = 3
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, (panel_title, value) in zip(axes.flat, panels):
        for i, (group, (xs, ys)) in enumerate(_series(jobs, value).items()):
            ax.plot(
                xs,
                [scale * y for y in ys],
                "osD^vP*"[i % 7] + "-",
                color=f"C{i % 10}",
                mfc="none",
                label=group,
            )
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("sparsity (%)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def _pruned_jobs(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    jobs = [r for r in rows if r["status"] == "ok" and isinstance(r["_res"].get(key), dict)]
    return [r for r in jobs if isinstance(r["pct"], (int, float)) and r["pct"] > 0]


def fig_dead_capacity(rows: list[dict[str, Any]], out: Path) -> list[str]:
    jobs = _pruned_jobs(rows, "dead")
    if not jobs:
        return ["dead_capacity: no pruned jobs with dead-capacity figures (results.json `dead`)"]
    classes = list(dict.fromkeys(c for r in jobs for c in r["_res"]["dead"]["by_class"]))
    panels = []
    for c in classes:
        units = next(
            r["_res"]["dead"]["by_class"][c]["units"] for r in jobs if c in r["_res"]["dead"]["by_class"]
        )
        panels.append(
            (
                f"{c}: {units} with no weight left",
                lambda res, c=c: (res["dead"]["by_class"].get(c) or {}).get("fraction"),
            )
        )
    if any("attention_keys" in r["_res"]["dead"] for r in jobs):  # results.json since 2026-11-23
        panels.append(
            (
                "attention: key units (rows of W_a) with no weight left",
                lambda res: (res["dead"].get("attention_keys") or {}).get("fraction"),
            )
        )
    panels.append(
        ("training target tokens whose softmax row is empty", lambda res: res["dead"].get(TOKEN_SHARE))
    )
    for c in EMBEDDING_CLASSES:  # results.json since 2026-11-23; older jobs have no point here
        if any(c in r["_res"]["dead"].get(EMBED_SHARE, {}) for r in jobs):
            panels.append(
                (
                    f"training tokens {c} reads whose row is empty",
                    lambda res, c=c: res["dead"].get(EMBED_SHARE, {}).get(c),
                )
            )
    _panels(
        jobs,
        panels,
        out,
        "dead_capacity.png",
        "Dead capacity: rows and units a mask leaves empty (median over seeds)",
        "%",
        100.0,
    )
    return ["dead_capacity.png"]


def fig_layer_error(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """``layer_error.png``: per class, the relative output error ||WX - W'X|| / ||WX|| of the
    pruned (not yet retrained) matrices on validation activations (nmt_prune/layer_error.py)."""
    jobs = _pruned_jobs(rows, "layer_error")
    if not jobs:
        return ["layer_error: no pruned jobs with layer errors (results.json `layer_error`)"]
    classes = list(dict.fromkeys(c for r in jobs for c in r["_res"]["layer_error"]["by_class"]))
    panels = [(c, lambda res, c=c: res["layer_error"]["by_class"].get(c)) for c in classes]
    _panels(
        jobs,
        panels,
        out,
        "layer_error.png",
        "Relative output error of the pruned layers, ||WX - W'X|| / ||WX|| (median over seeds)",
        "relative error",
    )
    return ["layer_error.png"]


def fig_error_vs_sensitivity(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """``layer_error_vs_sensitivity.png``: for the jobs that prune one class alone (``prune.only``,
    no retraining), the class's relative output error against the test perplexity change it
    causes: does the layer-local error predict the damage, and does one unit of it cost each
    class the same? One colour per class, one point per percentage (medians over seeds)."""
    pts: dict[str, dict[float, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cls, res = r["only"], r["_res"]
        err = (res.get("layer_error") or {}).get("by_class", {}).get(cls) if cls else None
        if r["status"] != "ok" or err is None or r["pruned_test_ppl"] is None or r["dense_test_ppl"] is None:
            continue
        pts[cls][float(r["pct"])].append((err, r["pruned_test_ppl"] - r["dense_test_ppl"]))
    if not pts:
        return ["layer_error_vs_sensitivity: no prune.only jobs with layer errors (study_sensitivity)"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (cls, by_pct) in enumerate(sorted(pts.items())):
        xs = [statistics.median(e for e, _ in by_pct[p]) for p in sorted(by_pct)]
        ys = [statistics.median(d for _, d in by_pct[p]) for p in sorted(by_pct)]
        ax.plot(xs, ys, "osD^vP*"[i % 7] + "-", color=f"C{i % 10}", mfc="none", label=cls)
        for x, y, p in zip(xs, ys, sorted(by_pct)):
            ax.annotate(f"{p:g}%", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if all(d > 0 for by in pts.values() for v in by.values() for _, d in v):
        ax.set_yscale("log")
    title = "Layer error vs the damage it does: one class pruned alone, no retraining"
    xlabel = "relative output error of the class, ||WX - W'X|| / ||WX||"
    finish(
        fig,
        ax,
        title,
        xlabel,
        "test perplexity change (pruned - dense)",
        out / "layer_error_vs_sensitivity.png",
    )
    return ["layer_error_vs_sensitivity.png"]
