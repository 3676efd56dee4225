"""Medians over seeds, paired with each seed's own dense model: the figures a seeded claim cites.

For every line of the report (method/scheme/..., ``report_read._label``) and percentage with at
least one finished job: the seeds, the median and range of test BLEU, the median dense BLEU of the
same seeds, and the paired difference (each job's test BLEU minus the BLEU of the dense model it
pruned) as median and range. Written as ``medians.csv`` and as a section of ``results.md``, so a
document quotes generated numbers, not numbers copied by hand.

Two medians are shown, and they answer different questions: ``median - dense median`` compares the
two medians (the issue's "medians of 3 seeds" goals), ``median diff`` is the median of the per-seed
differences (the paired effect of pruning).
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from nmt_prune.report_read import _label, markdown_table

COLUMNS = [
    "group",
    "pct",
    "n",
    "seeds",
    "median",
    "min",
    "max",
    "dense_median",
    "median_minus_dense_median",
    "median_diff",
    "min_diff",
    "max_diff",
    "jobs",
    "repeat_spread",
]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) else None


def _per_seed(rs: list[dict[str, Any]]) -> tuple[list[tuple[Any, float, float | None]], float]:
    """One (seed, test BLEU, dense BLEU) per seed, and the largest BLEU spread among repeats.

    Two presets may run the same job (study_obs and study_no_retrain both hold magnitude 50% seed
    1): counting both would weigh that seed twice. Repeats of a seed count once, with the median
    of their BLEUs; ``repeat_spread`` (0 when they agree bit for bit) shows whether they agree.
    """
    by_seed: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rs:
        by_seed[r["seed"]].append(r)
    out, spread = [], 0.0
    for seed in sorted(by_seed, key=str):
        reps = by_seed[seed]
        bleu = [float(r["test_bleu"]) for r in reps]
        dense = [d for d in (_num(r.get("dense_test_bleu")) for r in reps) if d is not None]
        spread = max(spread, max(bleu) - min(bleu))
        out.append((seed, statistics.median(bleu), statistics.median(dense) if dense else None))
    return out, spread


REPEAT_KEY = ("pct", "seed", "only", "init", "data_sentences", "snip_data", "test_bleu", "val_ppl")


def distinct(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows without exact repeats: a job another preset also ran (same line, percentage, seed
    and the same test BLEU and val ppl to the last bit) is kept once, so the figures' medians do
    not weigh its seed twice. Repeats that differ are kept (``medians`` shows their spread)."""
    seen, out = set(), []
    for r in rows:
        key = (_label(r), *(str(r.get(k)) for k in REPEAT_KEY))
        if r["status"] == "ok" and key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (line, pct) over the finished jobs with a test BLEU, each seed once."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok" and _num(r.get("test_bleu")) is not None:
            groups[(_label(r), r["pct"])].append(r)
    out = []
    for (label, pct), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], _num(kv[0][1]) or -1)):
        seeds, spread = _per_seed(rs)
        bleu = [b for _, b, _ in seeds]
        paired = [(b, d) for _, b, d in seeds]
        dense = [d for _, d in paired if d is not None]
        diffs = [b - d for b, d in paired if d is not None]
        rec = {
            "group": label,
            "pct": pct,
            "n": len(seeds),
            "seeds": " ".join(str(s) for s, _, _ in seeds),
            "median": statistics.median(bleu),
            "min": min(bleu),
            "max": max(bleu),
            "dense_median": statistics.median(dense) if dense else None,
            "median_diff": statistics.median(diffs) if diffs else None,
            "min_diff": min(diffs) if diffs else None,
            "max_diff": max(diffs) if diffs else None,
            "jobs": len(rs),
            "repeat_spread": spread,
        }
        rec["median_minus_dense_median"] = (
            rec["median"] - rec["dense_median"] if rec["dense_median"] is not None else None
        )
        out.append(rec)
    return out


def write_medians(rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """``medians.csv`` in ``out``; returns the records (results.md shows them too)."""
    recs = medians(rows)
    with (out / "medians.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(recs)
    return recs


def medians_section(recs: list[dict[str, Any]]) -> list[str]:
    """The results.md section: the lines with more than one seed (the others are the table above)."""
    seeded = [r for r in recs if r["n"] > 1]
    if not seeded:
        return []
    return [
        "## Medians over seeds",
        "",
        "Test BLEU over the seeds of each line (`medians.csv` has every line); `diff`: each job's "
        "test BLEU minus that of the dense model it pruned (paired by seed).",
        "",
        markdown_table(seeded, COLUMNS),
        "",
    ]
