"""run(cfg): the job wrapper. Checks the config, skips or resumes an earlier attempt, builds
the data and hands the job to its pipeline (``training.train_dense`` for a dense job,
``pruning.prune_after_fit`` / ``prune_from_scratch``), then writes ``results.json`` whatever
happened (ok, failed with the error, interrupted).

Every file a job writes goes to its own output directory (``paths.output_dir``): checkpoints,
logger files, ``results.json`` and ``hypotheses.test.txt`` (see DESIGN.md, "Contracts").
The modules that read Hydra configs: this one, ``training``, ``pruning``, ``loggers``, ``plan``
and ``validate``; the maths modules take plain values.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import traceback
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from nmt_prune import export, resume
from nmt_prune.console import quiet_console, result_line
from nmt_prune.loggers import LOGGERS, make_logger, summary_values
from nmt_prune.plan import plan_job, validate_prune
from nmt_prune.pruning import prune_after_fit, prune_from_scratch
from nmt_prune.runtime import keep_freed_memory, machine_record
from nmt_prune.training import build, build_data, effective_threads, train_dense
from nmt_prune.validate import no_such_key

__all__ = ["build", "run", "summary_values", "validate_prune"]  # the job's API (and what tests import)
log = logging.getLogger(__name__)


def _scheduler_record() -> dict[str, Any]:
    """results.json ``slurm``: the job's SLURM ids and node when it runs under SLURM, else nothing."""
    env = {
        "job_id": "SLURM_JOB_ID",
        "array_job_id": "SLURM_ARRAY_JOB_ID",
        "array_task_id": "SLURM_ARRAY_TASK_ID",
        "node": "SLURMD_NODENAME",
        "restarts": "SLURM_RESTART_COUNT",
    }
    rec = {k: os.environ[v] for k, v in env.items() if v in os.environ}
    return {"slurm": rec} if rec else {}


def _write_results(out: Path, results: dict[str, Any]) -> None:
    """results.json, replaced atomically (a kill never leaves half a file)."""
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, out / "results.json")


def _config_record(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except Exception:  # an interpolation that needs Hydra's runtime: keep it unresolved
        return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)


def check_trainer_keys(cfg: DictConfig) -> None:
    """``ConfigError`` for a ``trainer`` key that Lightning's ``Trainer`` does not take (the node is
    passed to it whole, so ``+trainer.X=v`` may add any of its arguments), before any data is read."""
    valid = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "kwargs")]
    for key in cfg.trainer:
        if key not in valid:
            raise no_such_key(f"trainer.{key}", sorted(valid), " (the arguments of Lightning's Trainer)")


def run(
    cfg: DictConfig, overrides: list[str] | None = None, job: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One job: dense training (``prune.pct=0``), pruning after fit, at init or during training.
    Writes results.json (with the resolved ``config``).

    The configuration is validated before any work. On any exception ``results.json`` says
    ``status: failed`` with the error, the W&B run is finished, and the exception propagates (so
    a multirun reports it and goes on with its other jobs). ``job``: what run.py knows from
    Hydra (multirun, sweep_dir, name = the override dirname, parallel_jobs of the launcher).
    """
    job = job or {}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "status": "running",
        "overrides": list(overrides or []),
        "config": _config_record(cfg),
        **_scheduler_record(),
    }
    logger: Logger | bool = False
    skipped, carried = False, {}
    quiet_console()
    try:
        if cfg.logger.name not in LOGGERS:
            raise ValueError(f"logger.name={cfg.logger.name!r}; valid choices: {LOGGERS}")
        plan = plan_job(cfg, results["overrides"])
        check_trainer_keys(cfg)
        timing = plan.timing
        if cfg.get("resume", True) and not cfg.ckpt_path:
            action, prev, last = resume.decide(out, results["config"], results["overrides"], timing)
            if action == "skip":
                log.info("skipped: %s holds status ok for this config (resume=false runs it again)", out)
                skipped = True
                return prev
            if action == "extend":  # its fit so far is a prefix of this one: go on to the new cap
                key = resume.CAPS[timing]
                cap = ".".join(key)
                was, now = resume.get(prev["config"], key), resume.get(results["config"], key)
                log.info("extending the earlier attempt (%s %s -> %s) from %s", cap, was, now, last)
                results["extended"] = {"key": cap, "from": was, "to": now, "status_before": prev["status"]}
                carried = {k: prev[k] for k in resume.CARRIED if prev.get(k) is not None}
            if action == "resume":
                log.info("resuming the unfinished earlier attempt from %s", last)
            if action in ("resume", "extend"):
                resume.stash_csv(out)
                cfg.ckpt_path = results["resumed_from"] = last
        _write_results(out, results)  # status running: a killed job is recognisable as such
        threads = effective_threads(cfg.threads, job.get("parallel_jobs", 1))
        if threads != cfg.threads:
            log.info(
                "threads=%d -> %d: %s parallel jobs share %s cores",
                cfg.threads,
                threads,
                job.get("parallel_jobs"),
                os.cpu_count(),
            )
        results["threads"] = threads
        results["machine"] = machine_record(cfg.trainer.accelerator)
        torch.set_num_threads(threads)
        if cfg.keep_freed_memory:
            keep_freed_memory()
        dm = build_data(cfg)
        logger = make_logger(cfg, out, job)
        if results.get("resumed_from") and isinstance(logger, CSVLogger):
            resume.open_resumed_csv(logger)
        if timing == "after_fit":
            results.update(prune_after_fit(cfg, plan, dm, out, logger))
            results.update({k: v for k, v in carried.items() if results.get(k) is None})
        elif timing in ("at_init", "during"):
            results.update(prune_from_scratch(cfg, plan, dm, out, logger))
        else:
            results.update(train_dense(cfg, dm, out, logger, resume=cfg.ckpt_path))
        if results.get("checkpoint"):  # what its file would weigh exported (nmt_prune/export.py)
            results["export"] = export.checkpoint_sizes(results["checkpoint"])
        return results
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, or SIGTERM (Lightning: SIGTERMException)
        code = (
            143 if type(e).__name__ == "SIGTERMException" else 130 if isinstance(e, KeyboardInterrupt) else 1
        )
        results.update(
            status="interrupted",
            error=f"{type(e).__name__} (exit {code}): resume=true continues "
            f"this job from its last checkpoint",
        )
        raise SystemExit(code) from e
    except BaseException as e:
        results.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        raise
    finally:
        if not skipped:
            _write_results(out, results)
            resume.merge_csv(out)
            log.info("%s", result_line(results, out))
        if isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.summary.update(summary_values(results))
            wandb.finish(exit_code=0 if results["status"] == "ok" else 1)
