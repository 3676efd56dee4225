"""The study's results in git (docs/study/runs): the durable record of a resumable study.

A session's working tree is laid anew and its processes end with it, so a multi-session study
keeps its finished jobs' ``results.json`` in the repository. ``save`` copies every finished job of
a study directory there (the Python traceback of a failed one left out); ``restore`` copies
them back into a study directory where they are missing, so that a re-run skips them
(``resume=true``, nmt_prune/resume.py) even on a fresh machine without the checkpoints.

    python -m nmt_prune.study save study docs/study/runs
    python -m nmt_prune.study restore docs/study/runs study
    python -m nmt_prune.study plan study study_oneshot study_headline [-- prune.pct=90] [--strict]

``plan`` says, without changing anything, what a re-run of each preset into ``study/<preset>``
would do with each job (skip, resume, extend, run) and, for a job that would run over an earlier
attempt, why (the keys that differ). ``--strict`` exits 1 if a finished job would run again:
``make study`` checks that first, so that a change to ``conf/`` or to a key's spelling cannot make
a study silently redo hours of finished work (it did once: nmt_prune/resume.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from nmt_prune.resume import decide, previous

CONF = Path(__file__).resolve().parents[1] / "conf"

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


def preset_grid(preset: str, overrides: list[str] = ()) -> list[list[str]]:
    """The jobs of a Hydra multirun ``+sweep=<preset> *overrides``: each job's overrides (the
    command line's, then one value per swept key, written as the sweeper writes it; a key the
    command line sets is not swept, as with Hydra's basic sweeper)."""
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        return _grid(preset, overrides)


def _grid(preset: str, overrides: list[str]) -> list[list[str]]:
    from hydra import compose

    cfg = compose("config", overrides=[f"+sweep={preset}", *overrides], return_hydra_config=True)
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    params = {k: v for k, v in (cfg.hydra.sweeper.params or {}).items() if k not in given}
    axes = [[f"{k}={v}" for v in _values(f"{k}={vals}")] for k, vals in params.items()]
    return [[*overrides, *job] for job in itertools.product(*axes)]


def _values(override: str) -> list[str]:
    """The values of ``key=a,b,c`` as Hydra's sweeper writes them (``1e-4`` -> ``0.0001``): the job
    directories are named after these strings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_override(override)
    return list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]


def plan(study: Path, preset: str, overrides: list[str] = ()) -> list[tuple[str, str, str | None]]:
    """(job directory name, action, why) for each job of ``preset`` run into ``study/<preset>``
    (``resume.decide`` with ``dry=True``: nothing is changed). Actions: skip, resume, extend, run,
    ``rerun`` (over an unfinished or failed attempt), ``rerun finished`` (over an ``ok`` one)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from nmt_prune.plan import plan_job

    rows = []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for job in _grid(preset, list(overrides)):
            task = [f"+sweep={preset}", *job]
            cfg = compose("config", overrides=task, return_hydra_config=True)
            name = cfg.hydra.job.override_dirname
            with open_dict(cfg):  # what the job's results.json records (paths: where, not what)
                del cfg["hydra"], cfg["paths"]
            config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
            timing = plan_job(cfg, task).timing  # as experiment.run finds it
            action, prev, why = decide(study / preset / name, config, task, timing, dry=True)
            if action == "run" and prev:
                action = "rerun" if prev.get("status") != "ok" else "rerun finished"
            rows.append((name, action, why))
    return rows


def _plan_main(study: Path, presets: list[str], overrides: list[str], strict: bool) -> int:
    known = sorted(f.stem for f in (CONF / "sweep").glob("*.yaml"))
    unknown = [p for p in presets if p not in known]
    if unknown:  # before Hydra's traceback: the name and every valid choice, on one line
        print(
            f"error: STUDY_PRESETS: no preset {', '.join(unknown)} in conf/sweep/; valid: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    reruns = 0
    for preset in presets:
        rows = plan(study, preset, overrides)
        counts = Counter(action for _, action, _ in rows)
        print(f"{preset}: {len(rows)} job(s): " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))
        for name, action, why in rows:
            if action.startswith("rerun"):
                print(f"  {action} {name}: its earlier attempt ({why}) moves to superseded-<time>/")
                reruns += action == "rerun finished"
    if strict and reruns:
        print(
            f"{reruns} finished job(s) would run again (above). If that is what "
            "you want, run `make study FORCE=1`; else restore the config they ran with.",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides: list[Any] = []
    if "--" in argv:
        i = argv.index("--")
        argv, overrides = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(prog="python -m nmt_prune.study", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("save", "restore", "plan"))
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", nargs="+", help="save/restore: the destination; plan: the presets")
    ap.add_argument("--strict", action="store_true", help="plan: exit 1 if a finished job would run again")
    args = ap.parse_args(argv)
    if args.action == "plan":
        from hydra.errors import HydraException

        from nmt_prune.validate import ConfigError

        try:
            sys.exit(_plan_main(args.src, args.dst, overrides, args.strict))
        except (ConfigError, HydraException) as e:  # e.g. a bad ARGS override: the message only
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    args.dst = Path(args.dst[0])
    if not args.src.is_dir():
        print(f"{args.action}: {args.src} is not a directory; nothing to {args.action}")
        return
    n = (save if args.action == "save" else restore)(args.src, args.dst)
    print(f"{args.action}: {n} job(s) from {args.src} to {args.dst}")


if __name__ == "__main__":
    main()
