"""The study's results in git (docs/study/runs): the durable record of a resumable study.

A session's working tree is laid anew and its processes end with it, so a multi-session study
keeps its finished jobs' ``results.json`` in the repository. ``save`` copies every finished job of
a study directory there (the Python traceback of a failed one left out); ``restore`` copies
them back into a study directory where they are missing, so that a re-run skips them
(``resume=true``, nmt_prune/resume.py) even on a fresh machine without the checkpoints.

    python -m nmt_prune.study save study docs/study/runs
    python -m nmt_prune.study restore docs/study/runs study
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmt_prune.resume import previous

#: results.json keys not worth keeping in git (large, or only useful on the machine that ran it)
DROPPED = ("traceback", "sparsity_by_param")


def _jobs(root: Path) -> list[Path]:
    return sorted(f.parent for f in root.rglob("results.json") if "report" not in f.relative_to(root).parts)


def save(study: Path, runs: Path) -> int:
    """Copy each job of ``study`` whose results.json says ``ok`` to ``runs`` (same relative path);
    returns how many were new or changed."""
    n = 0
    for job in _jobs(study):
        res = previous(job)
        if not res or res.get("status") != "ok":
            continue
        for k in DROPPED:
            res.pop(k, None)
        dst = runs / job.relative_to(study) / "results.json"
        text = json.dumps(res, indent=1, default=str) + "\n"
        if not dst.is_file() or dst.read_text() != text:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text)
            n += 1
    return n


def restore(runs: Path, study: Path) -> int:
    """Copy each saved job into ``study`` where that job has no ``ok`` results.json; returns the
    number restored."""
    n = 0
    for job in _jobs(runs):
        dst = study / job.relative_to(runs)
        here = previous(dst)
        if here and here.get("status") == "ok":
            continue
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "results.json").write_text((job / "results.json").read_text())
        n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nmt_prune.study", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("save", "restore"))
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args(argv)
    if not args.src.is_dir():
        print(f"{args.action}: {args.src} is not a directory; nothing to {args.action}")
        return
    n = (save if args.action == "save" else restore)(args.src, args.dst)
    print(f"{args.action}: {n} job(s) from {args.src} to {args.dst}")


if __name__ == "__main__":
    main()
