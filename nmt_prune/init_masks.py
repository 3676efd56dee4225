"""The masks pruning at initialisation would train from, compared without training them.

A job with ``prune.timing=at_init`` (SNIP, random, magnitude at init) fixes its mask on theta_0
before the first optimizer step and trains only the survivors. What that mask can ever reach is
set there: a softmax row it empties is a target word the trained model can only give its bias
(nmt_prune/dead.py), however long it trains. This tool computes the masks of several such jobs in
seconds and prints, for each, the sparsity of every weight class and its dead capacity, then how
much the masks agree: the Jaccard index |K_a & K_b| / |K_a | K_b| of their kept weights, against
q / (2 - q) for two independent random masks that keep a share q.

The command line is the sweep's, without ``-m``: every ``key=a,b,c`` is an axis, the jobs are the
product (``nmt_prune.study`` expands it as Hydra's sweeper does), and each mask is exactly the one
the job computes (``PruneAtInit``'s: the same config, theta_0, data and pruner;
tests/test_init_masks.py checks it against a trained job's checkpoint)::

    python -m nmt_prune.init_masks data=multi30k data.root=../shared/data/multi30k prune.method=snip \\
        prune.pct=90 init=uniform,xavier_uniform,kaiming_uniform,xavier_normal,kaiming_normal

Lee et al. 2019 (SNIP, sect. 5 and Table 3) report that SNIP's accuracy after training is robust
to the initialisation and to the mini-batch it scores on; this measures the mask-level side of
that claim (where the kept weights are), not the accuracy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

#: printed per class, in this order (Seq2Seq.weight_classes of a 2-layer model; others appended)
_SHORT = {"src_embed": "src_emb", "tgt_embed": "tgt_emb", "attention": "attn", "softmax": "softmax"}


def expand(overrides: list[str]) -> list[list[str]]:
    """``key=a,b`` overrides -> the product of their values, one override list per job (Hydra's
    sweep syntax and value strings, ``nmt_prune.study._values``)."""
    from nmt_prune.study import _values

    axes = [[o] if "=" not in o else [f"{o.split('=', 1)[0]}={v}" for v in _values(o)] for o in overrides]
    return [list(job) for job in itertools.product(*axes)]


def _compose(jobs: list[list[str]]) -> list[tuple[list[str], Any]]:
    """Each job's config, checked as run.py checks it, before any data is read; a job whose timing
    is not ``at_init`` is a mistake here (ConfigError)."""
    from hydra import compose, initialize_config_dir

    from nmt_prune.plan import plan_job
    from nmt_prune.study import CONF
    from nmt_prune.validate import ConfigError

    cache = os.environ.get("NMT_PRUNE_CACHE", str(Path.cwd() / ".cache"))
    out = []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for job in jobs:
            given = {o.split("=", 1)[0] for o in job}
            defaults = (f"paths.cache_dir={cache}", "paths.output_dir=.")
            paths = [o for o in defaults if o.split("=")[0] not in given]
            cfg = compose("config", overrides=[*paths, *job])
            plan = plan_job(cfg)
            if plan.timing != "at_init":
                raise ConfigError(
                    f"{' '.join(job)}: prune.timing resolves to {plan.timing!r}; this tool computes "
                    "the masks of pruning at init (prune.timing=at_init, or prune.method=snip with "
                    "timing=auto)"
                )
            out.append((job, cfg, plan))
    return out


def jaccard(a: dict[str, Any], b: dict[str, Any]) -> float:
    """|K_a & K_b| / |K_a | K_b| over the parameters both keep-mask dicts mask."""
    inter = union = 0
    for n in a.keys() & b.keys():
        inter += int((a[n] & b[n]).sum())
        union += int((a[n] | b[n]).sum())
    return inter / union if union else 1.0


def masks_of(jobs: list[list[str]]) -> list[dict[str, Any]]:
    """Per job: its label (the overrides that vary), keep masks, sparsity report, dead capacity and
    scoring time. The data are built once per distinct data config."""
    import torch

    from nmt_prune.dead import dead_record
    from nmt_prune.pruner import Pruner
    from nmt_prune.pruners import make_pruner
    from nmt_prune.training import build_data, build_module

    composed = _compose(jobs)
    varying = [i for i in range(len(jobs[0])) if len({j[i] for j in jobs}) > 1]
    data: dict[str, Any] = {}
    rows = []
    for job, cfg, plan in composed:
        key = json.dumps(dict(cfg.data), sort_keys=True, default=str)
        if key not in data:
            data[key] = build_data(cfg)
        dm = data[key]
        torch.set_num_threads(int(cfg.threads))
        model = build_module(cfg, dm).model  # theta_0, seeded as the job seeds it
        pruner = make_pruner(Pruner, plan)  # PruneAtInit's pruner, without Lightning
        t0 = time.perf_counter()
        masks = pruner.compute_masks(model, dm)
        pruner.apply(model, masks)
        rows.append(
            {
                "job": " ".join(job[i] for i in varying) or " ".join(job),
                "overrides": job,
                "keep": masks.masks,
                "report": masks.report(model, model.weight_classes()),
                "dead": dead_record(masks.masks, model, dm.splits["train"]),
                "data_used": pruner.data_used,
                "seconds": time.perf_counter() - t0,
                "keep_share": 1 - plan.amount,
            }
        )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the tool prints and writes: per job, sparsity by class and dead capacity; the Jaccard
    matrix of the kept weights; the independent-random reference q / (2 - q)."""
    jobs = []
    for r in rows:
        d = r["dead"]
        jobs.append(
            {
                "job": r["job"],
                "overrides": r["overrides"],
                "sparsity": r["report"]["sparsity"],
                "sparsity_by_class": r["report"]["sparsity_by_class"],
                "dead_by_class": {c: v["dead"] for c, v in d["by_class"].items()},
                "dead_token_share": {
                    **d.get("embed_dead_token_share", {}),
                    "softmax": d.get("softmax_dead_token_share"),
                },
                "attention_keys": d.get("attention_keys"),  # W_a's empty rows (general attention)
                "data_used": r["data_used"],
                "scoring_s": round(r["seconds"], 2),
            }
        )
    matrix = [[jaccard(a["keep"], b["keep"]) for b in rows] for a in rows]
    ref = [[independent_jaccard(a["keep_share"], b["keep_share"]) for b in rows] for a in rows]
    return {"jobs": jobs, "jaccard": matrix, "jaccard_independent_random": ref}


def independent_jaccard(qa: float, qb: float) -> float:
    """The expected Jaccard index of two independent random masks keeping shares qa and qb:
    |A & B| / |A | B| = qa qb / (qa + qb - qa qb) (q / (2 - q) when equal)."""
    return qa * qb / (qa + qb - qa * qb)


#: the classes whose empty rows remove words: source and target embeddings, softmax rows
_WORDS = ("src_embed", "tgt_embed", "softmax")


def _short(cls: str) -> str:
    return _SHORT.get(cls, cls.replace("encoder.layer", "enc").replace("decoder.layer", "dec"))


def render(s: dict[str, Any]) -> str:
    jobs = s["jobs"]
    classes = list(jobs[0]["sparsity_by_class"])
    words = [f"{_short(c)} dead rows (tokens)" for c in _WORDS]
    lines = [
        "sparsity by class (%); rows left empty in the classes that hold words, and the share of the",
        "training tokens those words carry",
        " | ".join(["job", "all", *map(_short, classes), *words, "W_a rows empty"]),
    ]
    for j in jobs:
        by, share = j["sparsity_by_class"], j["dead_token_share"]
        dead = [
            f"{j['dead_by_class'].get(c, '-')} ({'-' if share.get(c) is None else f'{100 * share[c]:.1f}%'})"
            for c in _WORDS
        ]
        pct = [f"{100 * j['sparsity']:.1f}", *(f"{100 * by[c]:.1f}" for c in classes)]
        keys = j.get("attention_keys")
        wa = "-" if keys is None else f"{keys['dead']}/{keys['total']}"
        wa += " (uniform)" if keys and keys["uniform"] else ""
        lines.append(" | ".join([j["job"], *pct, *dead, wa]))
    ref = s["jaccard_independent_random"]
    same = len({round(v, 12) for r in ref for v in r}) == 1
    head = f"{ref[0][0]:.3f}" if same else "in brackets, qa qb / (qa + qb - qa qb)"
    lines += ["", f"Jaccard index of the kept weights (two independent random masks: {head})"]
    for j, row, rrow in zip(jobs, s["jaccard"], ref, strict=True):
        cells = (f"{v:.3f}" if same else f"{v:.3f} ({r:.3f})" for v, r in zip(row, rrow, strict=True))
        lines.append(" | ".join([j["job"], *cells]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " See the module docstring (nmt_prune/init_masks.py).",
    )
    ap.add_argument("overrides", nargs="+", help="Hydra overrides; key=a,b,c varies key (as run.py -m)")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args(argv)

    from hydra.errors import HydraException

    from nmt_prune.validate import ConfigError

    try:
        rows = masks_of(expand(args.overrides))
    except (ConfigError, HydraException) as e:  # a user's mistake: the message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    s = summary(rows)
    print(render(s))
    if args.json:
        args.json.write_text(json.dumps(s, indent=1) + "\n")


if __name__ == "__main__":
    main()
