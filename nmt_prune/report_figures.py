"""The report's figures: each ``fig_*(rows, out)`` writes PNGs for the rows it has data for and returns
their names, or a note saying why it wrote none (``FIGURES``: all of them, in order)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

from nmt_prune.report_curves import fig_retrain_curves
from nmt_prune.report_dead import fig_dead_capacity, fig_error_vs_sensitivity, fig_layer_error
from nmt_prune.report_masks import fig_masks
from nmt_prune.report_plot import finish as _finish
from nmt_prune.report_recipe import fig_schemes_by_recipe
from nmt_prune.report_size import fig_size
from nmt_prune.report_sparsity import fig_bleu_vs_sparsity

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nmt_prune.names import class_names
from nmt_prune.report_read import _label, _pruning_rows
from nmt_prune.results import get as _get

# --------------------------------------------------------------------------------- figures


def _median(values: Iterable[float | None]) -> float | None:
    vs = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.median(vs) if vs else None


def _yscale(ax, values: list[float]) -> None:
    """Log scale for changes spanning decades (all positive), symmetric log otherwise."""
    vals = [v for v in values if v is not None]
    if vals and min(vals) > 0:
        ax.set_yscale("log")
    elif vals and max(abs(v) for v in vals) > 10:
        ax.set_yscale("symlog", linthresh=1.0)


def fig_class_sparsity(rows, out: Path) -> list[str]:
    jobs = [r for r in _pruning_rows(rows) if _get(r["_res"], "sparsity_by_class")]
    if not jobs:
        return ["class_sparsity: no jobs with per-class sparsity"]
    written = []
    for pct in sorted({r["pct"] for r in jobs}):
        rs = [r for r in jobs if r["pct"] == pct]
        groups: dict[str, list] = defaultdict(list)
        for r in rs:
            groups[_label(r)].append(r["_res"]["sparsity_by_class"])
        classes = list(next(iter(groups.values()))[0])
        fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(classes)), 4.5))
        width = 0.8 / len(groups)
        for i, (label, dicts) in enumerate(sorted(groups.items())):
            vals = [100 * (_median(d.get(c) for d in dicts) or 0.0) for c in classes]
            ax.bar([x + i * width for x in range(len(classes))], vals, width, label=label)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(classes))], classes, rotation=30, ha="right")
        ax.axhline(pct, color="k", lw=0.8, ls=":", label=f"overall {pct:g}%")
        name = f"class_sparsity_pct{pct:g}.png"
        _finish(
            fig,
            ax,
            f"Percentage pruned per weight class at {pct:g}% sparsity",
            "weight class",
            "pruned (% of the class)",
            out / name,
        )
        written.append(name)
    return written


def _sensitivity_rows(rows):
    return [
        r
        for r in rows
        if r["status"] == "ok"
        and r["only"]
        and r["pruned_test_ppl"] is not None
        and r["dense_test_ppl"] is not None
    ]


def fig_class_sensitivity(rows, out: Path) -> list[str]:
    rs = _sensitivity_rows(rows)
    if not rs:
        return ["class_sensitivity: no jobs with prune.only (run +sweep=class_sensitivity)"]
    order = class_names(8)  # the model's order, source side first (any depth up to 8 layers)
    classes = sorted({r["only"] for r in rs}, key=lambda c: (order.index(c) if c in order else len(order), c))
    pcts = sorted({r["pct"] for r in rs})
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(classes)), 4.5))
    width = 0.8 / len(pcts)
    for i, pct in enumerate(pcts):
        vals = [
            _median(
                r["pruned_test_ppl"] - r["dense_test_ppl"] for r in rs if (r["only"], r["pct"]) == (c, pct)
            )
            for c in classes
        ]
        ax.bar(
            [x + i * width for x in range(len(classes))],
            [v if v is not None else 0 for v in vals],
            width,
            label=f"{pct:g}% of the class",
        )
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(classes))], classes, rotation=30, ha="right")
    _yscale(ax, [r["pruned_test_ppl"] - r["dense_test_ppl"] for r in rs])
    _finish(
        fig,
        ax,
        "Change in perplexity when one class alone is pruned (no retraining)",
        "weight class",
        "test perplexity change (pruned - dense)",
        out / "class_sensitivity.png",
    )
    return ["class_sensitivity.png"]


def fig_ppl_vs_magnitude(rows, out: Path) -> list[str]:
    rs = [
        r for r in _sensitivity_rows(rows) if _get(r["_res"], "prune", "max_pruned_abs_by_class", r["only"])
    ]
    if not rs:
        return ["ppl_vs_magnitude: no prune.only jobs recording the largest |w| removed"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, cls in enumerate(dict.fromkeys(r["only"] for r in rs)):
        pts = sorted(
            (r["_res"]["prune"]["max_pruned_abs_by_class"][cls], r["pruned_test_ppl"] - r["dense_test_ppl"])
            for r in rs
            if r["only"] == cls
        )
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i % 10}", label=cls)
    _yscale(ax, [r["pruned_test_ppl"] - r["dense_test_ppl"] for r in rs])
    _finish(
        fig,
        ax,
        "Perplexity change vs the largest weight removed, per class",
        "largest |w| removed from the class",
        "test perplexity change (pruned - dense)",
        out / "ppl_vs_magnitude.png",
    )
    return ["ppl_vs_magnitude.png"]


def fig_median_over_seeds(rows, out: Path) -> list[str]:
    jobs = _pruning_rows(rows)
    cells: dict[tuple, list] = defaultdict(list)
    for r in jobs:
        cells[(_label(r), r["pct"])].append(r)
    multi = {k: v for k, v in cells.items() if len({r["seed"] for r in v}) >= 2}
    if not multi:
        return ["median_bleu_by_group: fewer than 2 seeds per job (add seed=1,2,3 to the sweep)"]
    labels = sorted({k[0] for k in multi})
    pcts = sorted({k[1] for k in multi})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        xs, med, lo, hi = [], [], [], []
        for j, pct in enumerate(pcts):
            vals = [r["test_bleu"] for r in multi.get((label, pct), []) if r["test_bleu"] is not None]
            if vals:
                m = statistics.median(vals)
                xs.append(j + i * width)
                med.append(m)
                lo.append(m - min(vals))
                hi.append(max(vals) - m)
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(pcts))], [f"{p:g}%" for p in pcts])
    _finish(
        fig,
        ax,
        "Median test BLEU over seeds (bars: min-max)",
        "sparsity",
        "test BLEU",
        out / "median_bleu_by_group.png",
    )
    return ["median_bleu_by_group.png"]


def fig_snip_by_init(rows, out: Path) -> list[str]:
    rs = [r for r in rows if r["status"] == "ok" and r["timing"] == "at_init" and r["test_bleu"] is not None]
    inits = sorted({r["init"] for r in rs})
    if len(inits) < 2:
        return ["snip_by_init: pruning-at-init jobs with fewer than 2 initialisations"]
    groups = sorted({(r["method"], r["pct"]) for r in rs})
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(inits)), 4.5))
    width = 0.8 / len(groups)
    for i, (method, pct) in enumerate(groups):
        vals = [
            _median(r["test_bleu"] for r in rs if (r["method"], r["pct"], r["init"]) == (method, pct, init))
            for init in inits
        ]
        ax.bar(
            [x + i * width for x in range(len(inits))],
            [v or 0 for v in vals],
            width,
            label=f"{method} {pct:g}%",
        )
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(inits))], inits, rotation=20, ha="right")
    _finish(
        fig,
        ax,
        "Pruning at initialisation: test BLEU by initialisation",
        "initialisation",
        "test BLEU",
        out / "snip_by_init.png",
    )
    return ["snip_by_init.png"]


def fig_snip_by_fraction(rows, out: Path) -> list[str]:
    rs = [
        r
        for r in rows
        if r["status"] == "ok" and r["method"] == "snip" and r["data_sentences"] not in ("", None)
    ]
    if len({r["data_sentences"] for r in rs}) < 2:
        return ["snip_by_fraction: SNIP jobs with fewer than 2 data amounts"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (init, pct) in enumerate(sorted({(r["init"], r["pct"]) for r in rs})):
        cell = [r for r in rs if (r["init"], r["pct"]) == (init, pct)]
        xs = sorted({r["data_sentences"] for r in cell})
        ys = [_median(r["test_bleu"] for r in cell if r["data_sentences"] == x) for x in xs]
        ax.plot(xs, ys, "o-", color=f"C{i % 10}", label=f"{init}, {pct:g}% (median over seeds)")
    ax.set_xscale("log")
    _finish(
        fig,
        ax,
        "SNIP: test BLEU by the data it scored on",
        "training sentences scored (log scale)",
        "test BLEU",
        out / "snip_by_fraction.png",
    )
    return ["snip_by_fraction.png"]


FIGURES: list[Callable[..., list[str]]] = [
    fig_bleu_vs_sparsity,
    fig_schemes_by_recipe,
    fig_class_sparsity,
    fig_class_sensitivity,
    fig_ppl_vs_magnitude,
    fig_masks,
    fig_median_over_seeds,
    fig_snip_by_init,
    fig_snip_by_fraction,
    fig_dead_capacity,
    fig_layer_error,
    fig_error_vs_sensitivity,
    fig_size,
    fig_retrain_curves,
]
