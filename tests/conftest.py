"""Shared fixtures: a small toy corpus, composed configs, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from nmt_prune.data.datamodule import DataConfig, NMTDataModule

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")  # tests never log online
torch.set_num_threads(1)


def make_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """The real config, composed as run.py would, shrunk for tests and pointed at tmp_path."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "model=tiny",
                "logger=none",
                "threads=1",
                "data.toy_sizes.train=300",
                "data.toy_sizes.val=40",
                "data.toy_sizes.test=40",
                f"paths.output_dir={tmp_path / 'out'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                *overrides,
            ],
        )


@pytest.fixture
def toy_dm(tmp_path: Path) -> NMTDataModule:
    cfg = DataConfig(toy_sizes={"train": 300, "val": 40, "test": 40}, batch_size=16, eval_batch_size=16)
    dm = NMTDataModule(cfg, tmp_path / "cache", seed=0)
    dm.setup()
    return dm
