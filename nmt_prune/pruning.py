"""The pruning pipelines: prune after fit (one-shot or scheduled) and from scratch (at init, during),
the retraining recipe and the pruners built from the config."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from callbacks.masking import (
    PruneAfterFit,
    PruneAtInit,
    han_dropout_rates,
    masks_from_checkpoint,
)
from nmt_prune import baseline, layer_error, rpp, schedules
from nmt_prune.checkpoints import check_checkpoint
from nmt_prune.data.datamodule import NMTDataModule
from nmt_prune.dead import dead_record
from nmt_prune.module import NMTModule
from nmt_prune.names import VAL_PPL, VAL_PPL_AT_TARGET
from nmt_prune.plan import Plan, _theta0_of
from nmt_prune.pruners import (
    build_schedule,
    check_exact_size,
    make_pruner,
    prune_info_record,
    scheduled_pruner,
)
from nmt_prune.stats import max_pruned_abs
from nmt_prune.training import (
    FIGURES,
    build_module,
    data_summary,
    evaluate,
    load_weights,
    make_trainer,
    train_dense,
    training_record,
    val_ppl,
    write_hyps,
)
from nmt_prune.validate import REINIT_SEED_OFFSET

log = logging.getLogger(__name__)


def _retrain_config(cfg: DictConfig, plan: Plan) -> DictConfig:
    """The config the pruned model trains with.

    rewind=none: See et al.'s retraining, the training optimiser from ``lr_factor`` x its LR;
    ``until=epochs``: halved every ``halve_every`` epochs, for ``retrain.epochs``;
    ``until=converged``: the job's convergence rule (``lr_schedule=converge|early_stop``, as the
    dense training) with ``retrain.epochs`` as the cap. rewind=init|reinit (sparse from scratch):
    the full training recipe (optim, lr_schedule, trainer.max_epochs) unchanged.
    """
    rcfg = cfg.copy()
    r = plan.retrain
    if plan.rewind == "none":
        OmegaConf.set_struct(rcfg, False)
        rcfg.optim.lr = cfg.optim.lr * r.lr_factor
        if r.until == "epochs":
            rcfg.lr_schedule = {
                "name": "halving",
                "start_epoch": r.halve_every,
                "every": r.halve_every,
                "factor": 0.5,
            }
        rcfg.trainer.max_epochs = schedules.fit_epochs(plan.schedule, OmegaConf.to_container(cfg.prune))
    return rcfg


#: results.json ``dense`` of a pruned job: the baseline's figures (measured with the job's eval
#: settings: ``eval``; ``measured_here`` when the job measured them) and where it came from
_DENSE_KEYS = (
    *FIGURES,
    "checkpoint",
    "cache_key",
    "trained_here",
    "adopted",
    "training",
    "eval",
    "measured_here",
)


def prune_from_scratch(
    cfg: DictConfig, plan: Plan, dm: NMTDataModule, out: Path, logger: Logger | bool
) -> dict[str, Any]:
    """Train from the initialisation with pruning: once before the first step (``at_init``:
    SNIP, random, magnitude), or by a schedule while training (``during``: gradual, linear).

    At init, the masks are computed by ``PruneAtInit.on_fit_start`` from theta_0, before any
    optimizer step; training runs from theta_0 (masked) with the full training recipe.
    """
    timing = plan.timing
    if timing == "during":
        pruner = scheduled_pruner(cfg, plan, build_schedule(cfg, dm, timing))
        monitor = VAL_PPL_AT_TARGET
    else:
        pruner, monitor = make_pruner(PruneAtInit, plan), VAL_PPL
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
        prune=prune_info_record(cfg, plan, pruner, pruner.masks),
        **rep,
        pruned=None,
        dense=None,
        dead=dead_record(pruner.masks.masks, module.model, dm.splits["train"]),
    )
    return res


def prune_after_fit(
    cfg: DictConfig, plan: Plan, dm: NMTDataModule, out: Path, logger: Logger | bool
) -> dict[str, Any]:
    """Dense baseline (cached or given) -> prune -> evaluate -> retrain with masks fixed -> test."""
    p = cfg.prune
    sched = build_schedule(cfg, dm, "after_fit") if p.schedule != "one_shot" else None
    module = build_module(cfg, dm)  # receives the dense weights below
    check_exact_size(cfg, module)  # before the dense training, not after
    if p.baseline:
        dense = {
            "checkpoint": str(Path(p.baseline).resolve()),
            "cache_key": None,
            "trained_here": False,
            "theta0": str(_theta0_of(p.baseline)),
        }
    else:
        dense = baseline.obtain(
            cfg,
            lambda d, last: train_dense(
                cfg, dm, d, CSVLogger(save_dir=str(d), name="csv", version=""), resume=last
            ),
            dm.fingerprint,
            lambda ckpt: val_ppl(cfg, dm, str(ckpt)),
        )
    load_weights(module, dense["checkpoint"], "prune.baseline" if p.baseline else "the dense cache entry")
    job_eval = OmegaConf.to_container(cfg.eval, resolve=True)
    if p.baseline or dense.get("eval") != job_eval:  # dense figures measured with this job's eval settings
        dense_ev = evaluate(make_trainer(cfg, out, False, max_epochs=0), module, dm, None)
        dense.update({k: v for k, v in dense_ev.items() if k in FIGURES}, eval=job_eval, measured_here=True)
    if sched is not None:
        return _scheduled_after_fit(cfg, plan, dm, out, logger, module, dense, sched)
    pruner = make_pruner(PruneAfterFit, plan)
    pruner.cache_dir = Path(cfg.paths.cache_dir) / "saliency"  # one dense model, many percentages
    if cfg.ckpt_path:  # resuming the retraining: the masks it started with, not recomputed ones
        check_checkpoint(cfg.ckpt_path, module, "ckpt_path")
        pruner.masks = masks_from_checkpoint(cfg.ckpt_path)
        if pruner.masks is None:
            raise ValueError(f"ckpt_path={cfg.ckpt_path} holds no masks: it is not a pruned run's checkpoint")
        pruner.masks.apply(module.model)
    rpp_record = None
    if p.rpp.epochs > 0 and pruner.masks is None:  # RPP drives small weights to zero first
        names = [n for ns in pruner.classes(module.model).values() for n in ns]
        rpp_record = rpp.phase(cfg, dm, out, module, names)
    ev_trainer = make_trainer(cfg, out, logger, [pruner], max_epochs=0)
    t0 = time.perf_counter()
    snap = layer_error.snapshot(module.model, dm) if pruner.masks is None else None  # (not on a resume)
    masks = pruner.masks or pruner.compute_masks(module.model, dm)
    pruner.masks = masks
    largest_removed = max_pruned_abs(module.model, masks.masks, module.model.weight_classes())
    pruner.apply(module.model, masks)
    layer_err = layer_error.errors_after(snap, module.model) if snap else None
    prune_s = time.perf_counter() - t0
    log.info(
        "pruned %s/%s %g%%: %d of %d prunable weights, %.1f s (scoring %.1f s)",
        p.method,
        p.scheme,
        p.pct,
        masks.n_pruned(),
        masks.n_masked(),
        prune_s,
        pruner.saliency_s,
    )
    pruner.log_sparsity(ev_trainer, module)
    pruned = evaluate(ev_trainer, module, dm, None)
    eval_s = pruned.pop("eval_s")
    figures = {f"pruned/{k}": v for k, v in pruned.items() if k in FIGURES and v is not None}
    figures.update({f"dense/{k}": dense[k] for k in FIGURES if dense.get(k) is not None})
    for lg in ev_trainer.loggers:
        lg.log_metrics(figures, step=0)

    rcfg = _retrain_config(cfg, plan)
    init_seed = cfg.seed + REINIT_SEED_OFFSET if p.rewind == "reinit" else None
    rmodule = build_module(rcfg, dm, init_seed=init_seed)
    if p.rewind == "none":
        rmodule.model.load_state_dict(module.model.state_dict())
    elif p.rewind == "init":
        rmodule.model.load_state_dict(torch.load(dense["theta0"], map_location="cpu", weights_only=True))
    masks.apply(rmodule.model)  # rewind=reinit: rmodule holds the fresh initialisation
    if p.dropout_adjust:
        rmodule.model.set_dropout(han_dropout_rates(rmodule.model, masks, dict(rmodule.model.dropout_p)))
    if rcfg.trainer.max_epochs > 0:
        fit, final = _retrain(cfg, rcfg, dm, out, logger, rmodule, pruner), rmodule
    else:  # evaluate only: the pruned model is the result; save it with its masks
        best = str(out / "checkpoints" / "best.ckpt")
        ev_trainer.save_checkpoint(best)
        fit = {"after": dict(pruned), "retrain_s": 0.0, "history": [], "training": None, "checkpoint": best}
        fit["after"]["eval_s"], final = 0.0, module
    pruned.pop("test_decode_s", None)
    prune_info = prune_info_record(cfg, plan, pruner, masks)
    prune_info["max_pruned_abs_by_class"] = largest_removed
    timings = {"prune_s": prune_s, "saliency_s": pruner.saliency_s, "eval_s": eval_s}
    pruned = {k: pruned[k] for k in FIGURES}
    extra = {"prune": prune_info, "pruned": pruned, "layer_error": layer_err, "rpp": rpp_record}
    return _result(cfg, dm, out, final, masks, dense, fit, timings, **extra)


def _retrain(
    cfg, rcfg, dm, out, logger, rmodule, pruner, monitor: str = VAL_PPL, figures=None
) -> dict[str, Any]:
    """The one retraining path of every prune-after-fit job (one-shot or scheduled): fit
    ``rmodule`` with the pruner's callback under the retraining recipe ``rcfg`` (resuming
    ``cfg.ckpt_path``), then test its best checkpoint by ``monitor``. ``figures``: logged first."""
    trainer = make_trainer(rcfg, out, logger, [pruner], monitor=monitor)
    for lg in trainer.loggers:
        lg.log_metrics(figures or {}, step=0)
    trainer.fit(rmodule, datamodule=dm, ckpt_path=cfg.ckpt_path)
    best = trainer.checkpoint_callback.best_model_path or None
    fit = {
        "retrain_s": rmodule.fit_s(),  # the attempts it resumed included
        "history": list(rmodule.history),
        "training": training_record(trainer),
        "checkpoint": best,
    }  # all read before the test, which loads the best checkpoint (and its shorter history) back
    fit["after"] = evaluate(trainer, rmodule, dm, best)
    return fit


def _result(cfg, dm, out, final, masks, dense, fit, timings, **extra) -> dict[str, Any]:
    """results.json of a prune-after-fit job: the final model's figures, masks, dead capacity."""
    write_hyps(out, final)
    rep = masks.report(final.model, final.model.weight_classes())
    rep["dead"] = dead_record(masks.masks, final.model, dm.splits["train"])
    after = fit["after"]
    timings = {
        "train_s": dense.get("timings", {}).get("train_s", 0.0) if dense["trained_here"] else 0.0,
        **timings,
        "retrain_s": fit["retrain_s"],
        "eval_s": timings.get("eval_s", 0.0) + after.pop("eval_s"),
        "test_decode_s": after.pop("test_decode_s"),
    }
    return dict(
        status="ok",
        **extra,
        **rep,
        **after,
        dense={k: dense.get(k) for k in _DENSE_KEYS},
        timings=timings,
        checkpoint=fit["checkpoint"],
        history=fit["history"],
        training=fit["training"],
        data=data_summary(cfg, dm),
    )


def _scheduled_after_fit(
    cfg: DictConfig,
    plan: Plan,
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
    pruner = scheduled_pruner(cfg, plan, schedule)
    log.info("schedule %s", schedule.describe())
    figures = {f"dense/{k}": dense[k] for k in FIGURES if dense.get(k) is not None}
    rcfg = _retrain_config(cfg, plan)
    rmodule = build_module(rcfg, dm)
    rmodule.model.load_state_dict(module.model.state_dict())
    fit = _retrain(cfg, rcfg, dm, out, logger, rmodule, pruner, VAL_PPL_AT_TARGET, figures)
    fit["retrain_s"] -= pruner.prune_s
    timings = {"prune_s": pruner.prune_s, "saliency_s": sum(e["saliency_s"] for e in pruner.events)}
    prune_info = prune_info_record(cfg, plan, pruner, pruner.masks)
    return _result(cfg, dm, out, rmodule, pruner.masks, dense, fit, timings, prune=prune_info, pruned=None)
