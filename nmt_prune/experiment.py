"""run(cfg): build data, model, trainer from a Hydra config; train, test, write the results.

The only module that knows about Hydra configs. Every file a job writes goes to its own output
directory (``paths.output_dir``): checkpoints, logger files, ``results.json`` and
``hypotheses.test.txt`` (see DESIGN.md, "Contracts").
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from callbacks.convergence import Convergence, stop_record
from callbacks.masking import (
    PruneAfterFit,
    PruneAtInit,
    ScheduledPruning,
    han_dropout_rates,
    masks_from_checkpoint,
)
from nmt_prune import baseline, criteria, resume, schedules
from nmt_prune.checkpoints import check_checkpoint
from nmt_prune.console import quiet_console, result_line
from nmt_prune.data.datamodule import DataConfig, NMTDataModule
from nmt_prune.data.text import EOS_ID
from nmt_prune.dead import dead_capacity, target_counts
from nmt_prune.model import init_weights
from nmt_prune.module import CONVERGENCE_RULES, NMTModule
from nmt_prune.plan import _excluded, _theta0_of, validate_prune
from nmt_prune.runtime import keep_freed_memory
from nmt_prune.stats import max_pruned_abs, param_stats
from nmt_prune.validate import ConfigError, check_basics

log = logging.getLogger(__name__)
LOGGERS = ("wandb", "csv", "none")
#: rewind=reinit draws theta_0' from the run's seed plus this (never equal to the original theta_0)
REINIT_SEED_OFFSET = 1_000_003


def _wandb_mode() -> str:
    """WANDB_MODE if set; else online when the user is logged in (API key in the environment or
    ~/.netrc), offline otherwise: a run never needs an account or a network."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    return "online" if logged_in else "offline"


def make_logger(cfg: DictConfig, out: Path, job: dict[str, Any] | None = None) -> Logger | bool:
    """The job's logger. W&B: one run per job, named by its overrides, grouped by its sweep
    (``logger.group`` when set, else the sweep directory), with the resolved config as a dict."""
    job = job or {}
    name = cfg.logger.name
    if name not in LOGGERS:
        raise ValueError(f"logger.name={name!r}; valid choices: {LOGGERS}")
    if name == "none":
        return False
    if name == "csv":
        return CSVLogger(save_dir=str(out), name="csv", version="")
    mode = _wandb_mode()
    group = cfg.logger.group or (job.get("sweep_dir") if job.get("multirun") else None)
    return WandbLogger(
        project=cfg.logger.project, group=group, name=job.get("name") or None, save_dir=str(out),
        mode=mode, config=OmegaConf.to_container(cfg, resolve=True), tags=list(cfg.logger.tags or []),
    )  # fmt: skip


def summary_values(results: dict[str, Any]) -> dict[str, Any]:
    """results.json flattened to ``a/b`` keys of scalars (W&B summary; report columns)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[prefix] = value

    for key in ("status", "error", "prune", "sparsity", "sparsity_no_embed", "sparsity_by_class", "val_ppl",
                "val_bleu", "test_ppl", "test_bleu", "test_bleu_lc", "test_bleu_tok_lc", "pruned", "dense",
                "timings", "params", "training", "dead"):  # fmt: skip
        if key in results:
            walk(key, results[key])
    return flat


def effective_threads(threads: int, parallel_jobs: int) -> int:
    """Torch threads for a job: never more than the cores divided among the parallel jobs
    (an oversubscribed LSTM runs many times slower; README, "Speed")."""
    if parallel_jobs == 1:
        return threads
    cores = os.cpu_count() or 1
    jobs = cores if parallel_jobs < 1 else parallel_jobs
    return max(1, min(threads, cores // jobs))


def build_data(cfg: DictConfig) -> NMTDataModule:
    """Data, tokenised, vocabularies built."""
    dm = NMTDataModule(DataConfig(**OmegaConf.to_container(cfg.data, resolve=True)),
                       cfg.paths.cache_dir, cfg.seed)  # fmt: skip
    dm.setup()
    return dm


def build_module(cfg: DictConfig, dm: NMTDataModule, init_seed: int | None = None) -> NMTModule:
    """A module initialised by ``cfg.init``, from RNG seed ``init_seed`` (default ``cfg.seed``).

    Seeding here, right before the initialisation, makes theta_0 a function of the config alone:
    a dense run, the cached dense baseline and a rewind to init all see the same theta_0.
    """
    module = NMTModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        lr_schedule=OmegaConf.to_container(cfg.lr_schedule, resolve=True),
        eval=OmegaConf.to_container(cfg.eval, resolve=True),
        label_smoothing=cfg.loss.label_smoothing,
        weight_penalty=OmegaConf.to_container(cfg.loss.weight_penalty),
        data_state=dm.state(),
    )
    pl.seed_everything(cfg.seed if init_seed is None else init_seed, workers=True, verbose=False)
    init_weights(module.model, cfg.init.scheme, cfg.init.scale, cfg.init.forget_bias)
    return module


def build(cfg: DictConfig) -> tuple[NMTDataModule, NMTModule]:
    """Data (tokenised, vocabularies built) and an initialised module."""
    dm = build_data(cfg)
    return dm, build_module(cfg, dm)


def _trainer(
    cfg: DictConfig,
    out: Path,
    logger: Logger | bool,
    callbacks: list[pl.Callback] | None = None,
    monitor: str = "val/ppl",
    **overrides: Any,
) -> pl.Trainer:
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor=monitor, mode="min",
        save_last=True, auto_insert_metric_name=False,
    )  # fmt: skip
    callbacks = [ckpt, *(callbacks or [])]
    sched = cfg.lr_schedule
    if sched.name in CONVERGENCE_RULES:
        settings = {k: sched[k] for k in ("patience", "factor", "max_halvings") if k in sched}
        callbacks.append(Convergence(sched.name, monitor, **settings))
    progress = bool(cfg.trainer.get("enable_progress_bar", True)) and sys.stdout.isatty()
    if progress:
        callbacks.append(RichProgressBar())
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if k != "enable_progress_bar"}
    kwargs.update(overrides)
    return pl.Trainer(default_root_dir=str(out), logger=logger, callbacks=callbacks,
                      enable_progress_bar=progress, **kwargs)  # fmt: skip


def _training(trainer: pl.Trainer) -> dict[str, Any]:
    """results.json ``training``: the epochs a fit ran and why it stopped."""
    rule = next((c for c in trainer.callbacks if isinstance(c, Convergence)), None)
    return stop_record(trainer, trainer.current_epoch, rule)


def _dead(masks, model, dm: NMTDataModule) -> dict[str, Any]:
    """results.json ``dead``: rows, columns and units the masks leave empty (nmt_prune/dead.py)."""
    counts = target_counts(dm.splits["train"].tgt, len(dm.tgt_vocab), EOS_ID)
    return dead_capacity(masks.masks, model.weight_classes(), counts)


def _data_summary(cfg: DictConfig, dm: NMTDataModule) -> dict[str, Any]:
    return {
        "name": cfg.data.name,
        "vocab_src": len(dm.src_vocab),
        "vocab_tgt": len(dm.tgt_vocab),
        "train_pairs": len(dm.splits["train"].src),
        "dropped": dm.n_dropped,
    }


def _evaluate(trainer: pl.Trainer, module: NMTModule, dm: NMTDataModule, ckpt: str | None) -> dict[str, Any]:
    """Validate and test (``ckpt``: a checkpoint to load first, or None for the current weights)."""
    t0 = time.perf_counter()
    val = trainer.validate(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    test = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    return {
        "val_ppl": val["val/ppl"],
        "val_bleu": val.get("val/bleu"),
        "test_ppl": test["test/ppl"],
        "test_bleu": test["test/bleu"],
        "test_bleu_lc": test["test/bleu_lc"],
        "test_bleu_tok_lc": test["test/bleu_tok_lc"],
        "bleu_signature": module.last_signature,
        "eval_s": time.perf_counter() - t0,
        "test_decode_s": test["test/decode_s"],
    }


def _write_hyps(out: Path, module: NMTModule) -> None:
    (out / "hypotheses.test.txt").write_text("\n".join(module.last_hyps) + "\n", encoding="utf-8")


def train_dense(
    cfg: DictConfig,
    dm: NMTDataModule,
    out: Path,
    logger: Logger | bool,
    resume: str | None = None,
    callbacks: list[pl.Callback] | None = None,
    monitor: str = "val/ppl",
) -> dict[str, Any]:
    """Train the dense model, test its best checkpoint; writes ``checkpoints/{best,last}.ckpt``,
    ``theta0.pt`` (the initial weights) and ``hypotheses.test.txt`` under ``out``.

    ``callbacks`` prune at init or during training; ``monitor`` is the metric that picks the
    best checkpoint (``val/ppl_at_target`` for schedules: epochs at the final sparsity only)."""
    module = build_module(cfg, dm)
    if resume:
        check_checkpoint(resume, module, "ckpt_path")
    theta0 = out / "theta0.pt"
    if not theta0.exists():  # a resumed run keeps the theta_0 of its first start
        torch.save(module.model.state_dict(), theta0)
    trainer = _trainer(cfg, out, logger, callbacks, monitor=monitor)
    trainer.fit(module, datamodule=dm, ckpt_path=resume)
    train_s = module.fit_s()  # the attempts it resumed included
    history = list(module.history)  # loading the best checkpoint below rolls it back
    training = _training(trainer)
    best = trainer.checkpoint_callback.best_model_path or None
    ev = _evaluate(trainer, module, dm, best)
    _write_hyps(out, module)
    timings = {"train_s": train_s, "prune_s": 0.0, "retrain_s": 0.0,
               "eval_s": ev.pop("eval_s"), "test_decode_s": ev.pop("test_decode_s")}  # fmt: skip
    return dict(status="ok", prune=None, **param_stats(module.model), **ev, dense=None, timings=timings,
                checkpoint=best, history=history, training=training, data=_data_summary(cfg, dm))  # fmt: skip


def _steps_per_epoch(cfg: DictConfig, dm: NMTDataModule) -> int:
    """Optimizer steps per training epoch (honours trainer.limit_train_batches)."""
    n = len(dm.train_dataloader())
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        n = min(n, limit)
    elif isinstance(limit, float):
        n = max(1, int(n * limit))
    return n


def build_schedule(cfg: DictConfig, dm: NMTDataModule, timing: str) -> schedules.Schedule:
    """The job's schedule over the fit it prunes in: the retraining (after_fit: its epochs are
    ``schedules.fit_epochs``) or the whole training (during). Raises before any training if the
    schedule does not fit."""
    p = OmegaConf.to_container(cfg.prune, resolve=True)
    epochs = cfg.trainer.max_epochs if timing == "during" else schedules.fit_epochs(p["schedule"], p)
    if epochs < 1:
        key = "trainer.max_epochs" if timing == "during" else "prune.retrain.epochs"
        raise ValueError(f"prune.schedule={p['schedule']} needs training to prune during: {key}=0")
    return schedules.build(p["schedule"], p["pct"], p, _steps_per_epoch(cfg, dm), epochs)


def _load_weights(module: NMTModule, path: str, key: str) -> None:
    module.load_state_dict(check_checkpoint(path, module, key)["state_dict"])


@torch.no_grad()
def val_ppl(cfg: DictConfig, dm: NMTDataModule, ckpt: str) -> float:
    """Validation perplexity of the model in ``ckpt`` (a model of ``cfg`` with ``dm``'s
    vocabularies, else ValueError), measured as validation does, without a Trainer."""
    module = build_module(cfg, dm)
    _load_weights(module, ckpt, "dense cache entry")
    module.eval()
    nll, ntok = 0.0, 0
    for batch in dm.val_dataloader():
        nll, ntok = nll + float(module.nll(batch, 0.0)), ntok + batch["ntok"]
    return math.exp(min(nll / ntok, 50.0))


def _retrain_config(cfg: DictConfig) -> DictConfig:
    """The config the pruned model trains with.

    rewind=none: See et al.'s retraining, the training optimiser from ``lr_factor`` x its LR;
    ``until=epochs``: halved every ``halve_every`` epochs, for ``retrain.epochs``;
    ``until=converged``: the job's convergence rule (``lr_schedule=converge|early_stop``, as the
    dense training) with ``retrain.epochs`` as the cap. rewind=init|reinit (sparse from scratch):
    the full training recipe (optim, lr_schedule, trainer.max_epochs) unchanged.
    """
    rcfg = cfg.copy()
    r = cfg.prune.retrain
    if cfg.prune.rewind == "none":
        OmegaConf.set_struct(rcfg, False)
        rcfg.optim.lr = cfg.optim.lr * r.lr_factor
        if r.until == "epochs":
            rcfg.lr_schedule = {"name": "halving", "start_epoch": r.halve_every, "every": r.halve_every,
                                "factor": 0.5}  # fmt: skip
        rcfg.trainer.max_epochs = schedules.fit_epochs(cfg.prune.schedule, OmegaConf.to_container(cfg.prune))
    return rcfg


_FIGURES = ("val_ppl", "val_bleu", "test_ppl", "test_bleu", "test_bleu_lc")
#: results.json ``dense`` of a pruned job: the baseline's figures (measured with the job's eval
#: settings: ``eval``; ``measured_here`` when the job measured them) and where it came from
_DENSE_KEYS = (
    *_FIGURES,
    "checkpoint",
    "cache_key",
    "trained_here",
    "adopted",
    "training",
    "eval",
    "measured_here",
)


#: prune.obd.estimator=exact costs one backward pass per weight: tiny models only
EXACT_MAX_WEIGHTS = 50_000


def _check_exact_size(cfg: DictConfig, module: NMTModule) -> None:
    if cfg.prune.method == "obd" and cfg.prune.obd.estimator == "exact":
        n = sum(p.numel() for p in module.model.parameters())
        if n > EXACT_MAX_WEIGHTS:
            raise ValueError(
                f"prune.obd.estimator=exact needs one backward pass per weight and this model has {n:,} "
                f"parameters (limit {EXACT_MAX_WEIGHTS:,}); use estimator fisher or ggn_mc, or model=tiny"
            )


def _pruner(cls: type, cfg: DictConfig, *extra: Any, **kwargs: Any):
    p = cfg.prune
    return cls(
        *extra, p.method, p.scheme, p.pct / 100, **kwargs, include_biases=p.include_biases,
        include_embeddings=p.include_embeddings, exclude=tuple(_excluded(p, cfg.model.layers)),
        seed=cfg.seed if p.seed is None else p.seed,
        settings=_criterion_settings(p),
    )  # fmt: skip


def _criterion_settings(p: DictConfig) -> dict[str, Any]:
    node = criteria.get(p.method).settings
    return OmegaConf.to_container(p[node]) if node else {}


def _scheduled_pruner(cfg: DictConfig, schedule: schedules.Schedule) -> ScheduledPruning:
    p = cfg.prune
    return _pruner(ScheduledPruning, cfg, schedule, regrow=p.regrow, dropout_adjust=p.dropout_adjust,
                   threshold=p.iterative.threshold)  # fmt: skip


def _prune_info(cfg: DictConfig, timing: str, pruner, masks) -> dict[str, Any]:
    info = OmegaConf.to_container(cfg.prune, resolve=True)
    info.update(timing=timing, amount=cfg.prune.pct / 100, n_pruned=masks.n_pruned(),
                n_prunable=masks.n_masked(), data_used=pruner.data_used)  # fmt: skip
    if isinstance(pruner, ScheduledPruning):
        info["events"] = pruner.events
    return info


def prune_from_scratch(
    cfg: DictConfig, dm: NMTDataModule, out: Path, logger: Logger | bool, timing: str
) -> dict[str, Any]:
    """Train from the initialisation with pruning: once before the first step (``at_init``:
    SNIP, random, magnitude), or by a schedule while training (``during``: gradual, linear).

    At init, the masks are computed by ``PruneAtInit.on_fit_start`` from theta_0, before any
    optimizer step; training runs from theta_0 (masked) with the full training recipe.
    """
    if timing == "during":
        pruner = _scheduled_pruner(cfg, build_schedule(cfg, dm, timing))
        monitor = "val/ppl_at_target"
    else:
        pruner, monitor = _pruner(PruneAtInit, cfg), "val/ppl"
        if cfg.ckpt_path:
            pruner.masks = masks_from_checkpoint(cfg.ckpt_path)
            if pruner.masks is None:
                raise ValueError(f"ckpt_path={cfg.ckpt_path} holds no masks: not a pruned run's checkpoint")
    res = train_dense(cfg, dm, out, logger, resume=cfg.ckpt_path, callbacks=[pruner], monitor=monitor)
    module = NMTModule.from_checkpoint(res["checkpoint"])
    rep = pruner.masks.report(module.model, module.model.weight_classes())
    if timing == "during":
        res["timings"].update(saliency_s=sum(e["saliency_s"] for e in pruner.events), prune_s=pruner.prune_s)
    else:
        res["timings"]["saliency_s"] = pruner.saliency_s
    res.update(
        prune=_prune_info(cfg, timing, pruner, pruner.masks),
        **rep,
        pruned=None,
        dense=None,
        dead=_dead(pruner.masks, module.model, dm),
    )
    return res


def prune_after_fit(cfg: DictConfig, dm: NMTDataModule, out: Path, logger: Logger | bool) -> dict[str, Any]:
    """Dense baseline (cached or given) -> prune -> evaluate -> retrain with masks fixed -> test."""
    p = cfg.prune
    sched = build_schedule(cfg, dm, "after_fit") if p.schedule != "one_shot" else None
    module = build_module(cfg, dm)  # receives the dense weights below
    _check_exact_size(cfg, module)  # before the dense training, not after
    if p.baseline:
        dense = {"checkpoint": str(Path(p.baseline).resolve()), "cache_key": None, "trained_here": False,
                 "theta0": str(_theta0_of(p.baseline))}  # fmt: skip
    else:
        dense = baseline.obtain(
            cfg, lambda d, last: train_dense(cfg, dm, d, CSVLogger(save_dir=str(d), name="csv", version=""),
                                             resume=last),
            dm.fingerprint, lambda ckpt: val_ppl(cfg, dm, str(ckpt)),
        )  # fmt: skip
    _load_weights(module, dense["checkpoint"], "prune.baseline" if p.baseline else "the dense cache entry")
    job_eval = OmegaConf.to_container(cfg.eval, resolve=True)
    if p.baseline or dense.get("eval") != job_eval:  # dense figures measured with this job's eval settings
        dense_ev = _evaluate(_trainer(cfg, out, False, max_epochs=0), module, dm, None)
        dense.update({k: v for k, v in dense_ev.items() if k in _FIGURES}, eval=job_eval, measured_here=True)
    if sched is not None:
        return _scheduled_after_fit(cfg, dm, out, logger, module, dense, sched)
    pruner = _pruner(PruneAfterFit, cfg)
    if cfg.ckpt_path:  # resuming the retraining: the masks it started with, not recomputed ones
        check_checkpoint(cfg.ckpt_path, module, "ckpt_path")
        pruner.masks = masks_from_checkpoint(cfg.ckpt_path)
        if pruner.masks is None:
            raise ValueError(f"ckpt_path={cfg.ckpt_path} holds no masks: it is not a pruned run's checkpoint")
        pruner.masks.apply(module.model)
    ev_trainer = _trainer(cfg, out, logger, [pruner], max_epochs=0)
    t0 = time.perf_counter()
    masks = pruner.masks or pruner.compute_masks(module.model, dm)
    pruner.masks = masks
    largest_removed = max_pruned_abs(module.model, masks.masks, module.model.weight_classes())
    masks.apply(module.model)
    prune_s = time.perf_counter() - t0
    log.info("pruned %s/%s %g%%: %d of %d prunable weights, %.1f s (scoring %.1f s)", p.method, p.scheme,
             p.pct, masks.n_pruned(), masks.n_masked(), prune_s, pruner.saliency_s)  # fmt: skip
    pruner.log_sparsity(ev_trainer, module)
    pruned = _evaluate(ev_trainer, module, dm, None)
    eval_s = pruned.pop("eval_s")
    figures = {f"pruned/{k}": v for k, v in pruned.items() if k in _FIGURES and v is not None}
    figures.update({f"dense/{k}": dense[k] for k in _FIGURES if dense.get(k) is not None})
    for lg in ev_trainer.loggers:
        lg.log_metrics(figures, step=0)

    rcfg = _retrain_config(cfg)
    init_seed = cfg.seed + REINIT_SEED_OFFSET if p.rewind == "reinit" else None
    rmodule = build_module(rcfg, dm, init_seed=init_seed)
    if p.rewind == "none":
        rmodule.model.load_state_dict(module.model.state_dict())
    elif p.rewind == "init":
        rmodule.model.load_state_dict(torch.load(dense["theta0"], map_location="cpu", weights_only=True))
    masks.apply(rmodule.model)  # rewind=reinit: rmodule holds the fresh initialisation
    if p.dropout_adjust:
        rmodule.model.set_dropout(han_dropout_rates(rmodule.model, masks, dict(rmodule.model.dropout_p)))
    epochs = rcfg.trainer.max_epochs
    retrain_s, history, training = 0.0, [], None
    if epochs > 0:
        trainer = _trainer(rcfg, out, logger, [pruner])
        trainer.fit(rmodule, datamodule=dm, ckpt_path=cfg.ckpt_path)
        retrain_s = rmodule.fit_s()  # the attempts it resumed included
        history = list(rmodule.history)
        training = _training(trainer)
        best = trainer.checkpoint_callback.best_model_path or None
        after = _evaluate(trainer, rmodule, dm, best)
    else:  # evaluate only: the pruned model is the result; save it with its masks
        best = str(out / "checkpoints" / "best.ckpt")
        ev_trainer.save_checkpoint(best)
        after = dict(pruned, eval_s=0.0)
    _write_hyps(out, rmodule if epochs > 0 else module)
    final = rmodule if epochs > 0 else module
    rep = masks.report(final.model, final.model.weight_classes())
    rep["dead"] = _dead(masks, final.model, dm)
    timings = {"train_s": dense.get("timings", {}).get("train_s", 0.0) if dense["trained_here"] else 0.0,
               "prune_s": prune_s, "saliency_s": pruner.saliency_s, "retrain_s": retrain_s,
               "eval_s": eval_s + after.pop("eval_s"),
               "test_decode_s": after.pop("test_decode_s")}  # fmt: skip
    pruned.pop("test_decode_s", None)
    prune_info = _prune_info(cfg, "after_fit", pruner, masks)
    prune_info["max_pruned_abs_by_class"] = largest_removed
    return dict(
        status="ok", prune=prune_info, **rep, **after,
        pruned={k: pruned[k] for k in _FIGURES},
        dense={k: dense.get(k) for k in _DENSE_KEYS},
        timings=timings, checkpoint=best, history=history, training=training, data=_data_summary(cfg, dm),
    )  # fmt: skip


def _scheduled_after_fit(
    cfg: DictConfig,
    dm: NMTDataModule,
    out: Path,
    logger: Logger | bool,
    module: NMTModule,
    dense: dict[str, Any],
    schedule: schedules.Schedule,
) -> dict[str, Any]:
    """Iterative, gradual or linear pruning of the dense model while it retrains.

    One fit of ``schedules.fit_epochs`` epochs with the retraining recipe (``_retrain_config``:
    its LR halving runs over the whole fit, so a schedule and one-shot pruning with the same
    retraining epochs train with the same LR curve). The test uses the best epoch at the final
    sparsity (``val/ppl_at_target``).
    """
    pruner = _scheduled_pruner(cfg, schedule)
    log.info("schedule %s", schedule.describe())
    figures = {f"dense/{k}": dense[k] for k in _FIGURES if dense.get(k) is not None}
    rcfg = _retrain_config(cfg)
    rmodule = build_module(rcfg, dm)
    rmodule.model.load_state_dict(module.model.state_dict())
    trainer = _trainer(rcfg, out, logger, [pruner], monitor="val/ppl_at_target")
    for lg in trainer.loggers:
        lg.log_metrics(figures, step=0)
    trainer.fit(rmodule, datamodule=dm, ckpt_path=cfg.ckpt_path)
    retrain_s = rmodule.fit_s() - pruner.prune_s
    history = list(rmodule.history)
    training = _training(trainer)
    best = trainer.checkpoint_callback.best_model_path or None
    after = _evaluate(trainer, rmodule, dm, best)
    _write_hyps(out, rmodule)
    rep = pruner.masks.report(rmodule.model, rmodule.model.weight_classes())
    rep["dead"] = _dead(pruner.masks, rmodule.model, dm)
    timings = {"train_s": dense.get("timings", {}).get("train_s", 0.0) if dense["trained_here"] else 0.0,
               "prune_s": pruner.prune_s, "saliency_s": sum(e["saliency_s"] for e in pruner.events),
               "retrain_s": retrain_s, "eval_s": after.pop("eval_s"),
               "test_decode_s": after.pop("test_decode_s")}  # fmt: skip
    return dict(
        status="ok", prune=_prune_info(cfg, "after_fit", pruner, pruner.masks), **rep, **after, pruned=None,
        dense={k: dense.get(k) for k in _DENSE_KEYS},
        timings=timings, checkpoint=best, history=history, training=training, data=_data_summary(cfg, dm),
    )  # fmt: skip


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
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that needs Hydra's runtime: keep it unresolved
        return OmegaConf.to_container(cfg, resolve=False)


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
    results: dict[str, Any] = {"status": "running", "overrides": list(overrides or []),
                               "config": _config_record(cfg), **_scheduler_record()}  # fmt: skip
    logger: Logger | bool = False
    skipped = False
    quiet_console()
    try:
        if cfg.logger.name not in LOGGERS:
            raise ValueError(f"logger.name={cfg.logger.name!r}; valid choices: {LOGGERS}")
        check_basics(cfg)
        try:
            timing = validate_prune(cfg)
        except (ValueError, FileNotFoundError) as e:  # all of them a mistake in the config
            raise ConfigError(str(e)) from None
        if cfg.get("resume", True) and not cfg.ckpt_path:
            action, prev, last = resume.decide(out, results["config"], results["overrides"])
            if action == "skip":
                log.info("skipped: %s holds status ok for this config (resume=false runs it again)", out)
                skipped = True
                return prev
            if action == "resume":
                log.info("resuming the unfinished earlier attempt from %s", last)
                resume.stash_csv(out)
                cfg.ckpt_path = results["resumed_from"] = last
        _write_results(out, results)  # status running: a killed job is recognisable as such
        threads = effective_threads(cfg.threads, job.get("parallel_jobs", 1))
        if threads != cfg.threads:
            log.info("threads=%d -> %d: %s parallel jobs share %s cores", cfg.threads, threads,
                     job.get("parallel_jobs"), os.cpu_count())  # fmt: skip
        results["threads"] = threads
        torch.set_num_threads(threads)
        if cfg.keep_freed_memory:
            keep_freed_memory()
        dm = build_data(cfg)
        logger = make_logger(cfg, out, job)
        if timing == "after_fit":
            results.update(prune_after_fit(cfg, dm, out, logger))
        elif timing in ("at_init", "during"):
            results.update(prune_from_scratch(cfg, dm, out, logger, timing))
        else:
            results.update(train_dense(cfg, dm, out, logger, resume=cfg.ckpt_path))
        return results
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, or SIGTERM (Lightning: SIGTERMException)
        code = (
            143 if type(e).__name__ == "SIGTERMException" else 130 if isinstance(e, KeyboardInterrupt) else 1
        )
        results.update(status="interrupted", error=f"{type(e).__name__} (exit {code}): resume=true continues "
                       f"this job from its last checkpoint")  # fmt: skip
        raise SystemExit(code) from e
    except BaseException as e:
        results.update(status="failed", error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc())  # fmt: skip
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
