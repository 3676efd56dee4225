"""The job's logger (W&B offline unless logged in, CSV, none) and results flattened for it."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from nmt_prune.results import FIGURE_BLOCKS

LOGGERS = ("wandb", "csv", "none")


def wandb_mode() -> str:
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
    mode = wandb_mode()
    group = cfg.logger.group or (job.get("sweep_dir") if job.get("multirun") else None)
    return WandbLogger(
        project=cfg.logger.project,
        group=group,
        name=job.get("name") or None,
        save_dir=str(out),
        mode=mode,
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        tags=list(cfg.logger.tags or []),
    )


def summary_values(results: dict[str, Any]) -> dict[str, Any]:
    """The figure blocks of results.json (``results.FIGURE_BLOCKS``) flattened to ``a/b`` keys of
    scalars: the W&B run summary."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[prefix] = value

    for key in FIGURE_BLOCKS:
        if key in results:
            walk(key, results[key])
    return flat
