"""Convergence rules (callbacks/convergence.py) against a scripted validation curve, and the
retraining-until-converged and dense-control paths of a job."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.errors import ConfigCompositionException
from lightning.pytorch.callbacks import ModelCheckpoint

from callbacks.convergence import Convergence, stop_record
from nmt_prune.experiment import run, validate_prune
from tests.conftest import make_cfg


class Scripted(pl.LightningModule):
    """A linear model whose validation 'ppl' follows a given curve, one value per epoch."""

    def __init__(self, curve: list[float]) -> None:
        super().__init__()
        self.curve, self.layer = curve, torch.nn.Linear(4, 1)
        self.at_val: dict[int, torch.Tensor] = {}  # epoch -> weights when validated
        self.at_start: dict[int, torch.Tensor] = {}
        self.lrs: dict[int, float] = {}

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def on_train_epoch_start(self) -> None:
        self.at_start[self.current_epoch] = self.layer.weight.detach().clone()
        self.lrs[self.current_epoch] = self.optimizers().param_groups[0]["lr"]

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self) -> None:
        self.at_val[self.current_epoch] = self.layer.weight.detach().clone()
        self.log("val/ppl", self.curve[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.1)


def _fit(tmp_path: Path, curve: list[float], rule: Convergence, max_epochs: int = 20):
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    module = Scripted(curve)
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/ppl", mode="min")
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        callbacks=[ckpt, rule],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, loader, loader)
    return trainer, module


def test_converge_halves_from_the_best_checkpoint_then_stops(tmp_path):
    curve = [5.0, 4.0, 4.5, 3.9, 4.0, 4.2, 1.0, 1.0]  # epochs 6-7 must never run
    rule = Convergence("converge", patience=1, factor=0.5, max_halvings=2)
    trainer, m = _fit(tmp_path, curve, rule)
    assert trainer.current_epoch == 6
    # epoch 2 did not improve on epoch 1: epoch 3 starts from epoch 1's weights at half the LR
    torch.testing.assert_close(m.at_start[3], m.at_val[1], rtol=0, atol=0)
    assert m.lrs[2] == 0.1 and m.lrs[3] == pytest.approx(0.05)
    # epoch 4 did not improve on epoch 3: epoch 5 starts from epoch 3 at a quarter
    torch.testing.assert_close(m.at_start[5], m.at_val[3], rtol=0, atol=0)
    assert m.lrs[5] == pytest.approx(0.025)
    assert not torch.equal(m.at_start[4], m.at_val[1])  # epoch 3 trained on
    rec = stop_record(trainer, trainer.current_epoch, rule)
    assert rec["stop_reason"] == "converged" and rec["epochs"] == 6 and rec["halvings"] == 2
    assert rec["best_epoch"] == 3
    assert [(e["after_epoch"], e["restored_epoch"]) for e in rec["events"]] == [(2, 1), (4, 3)]


def test_patience_counts_epochs_without_improvement(tmp_path):
    curve = [5.0, 4.0, 4.5, 4.1, 3.0, 3.5, 3.6, 3.7]
    rule = Convergence("converge", patience=2, max_halvings=1)
    trainer, m = _fit(tmp_path, curve, rule)
    # epochs 2-3 no better than 4.0: restore epoch 1 after epoch 3; 4 improves; 5-6 do not: stop
    torch.testing.assert_close(m.at_start[4], m.at_val[1], rtol=0, atol=0)
    assert trainer.current_epoch == 7 and rule.stop_reason == "converged"


def test_early_stop_keeps_the_lr_and_stops(tmp_path):
    curve = [5.0, 4.0, 4.5, 4.6, 1.0]
    rule = Convergence("early_stop", patience=2)
    trainer, m = _fit(tmp_path, curve, rule)
    assert trainer.current_epoch == 4 and set(m.lrs.values()) == {0.1}
    assert stop_record(trainer, 4, rule)["stop_reason"] == "early_stopping"


def test_infinite_values_before_a_schedule_target_are_not_counted(tmp_path):
    inf = float("inf")
    curve = [inf, inf, inf, 4.0, 3.0, 3.5]
    rule = Convergence("early_stop", patience=1)
    trainer, _ = _fit(tmp_path, curve, rule)
    assert trainer.current_epoch == 6 and rule.best_epoch == 4 and rule.stop_reason == "early_stopping"


def test_max_epochs_caps_a_fit_that_still_improves(tmp_path):
    rule = Convergence("converge", patience=1, max_halvings=3)
    trainer, _ = _fit(tmp_path, [5.0, 4.0, 3.0], rule, max_epochs=3)
    assert stop_record(trainer, trainer.current_epoch, rule)["stop_reason"] == "max_epochs"


@pytest.mark.parametrize(
    "settings, key",
    [({"patience": 0}, "patience"), ({"factor": 1.5}, "factor"), ({"max_halvings": -1}, "max_halvings")],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ValueError, match=f"lr_schedule.{key}="):
        Convergence("converge", **settings)


def test_retrain_until_converged_needs_a_convergence_rule(tmp_path):
    cfg = make_cfg(tmp_path, "prune.pct=50", "prune.retrain.until=converged")
    with pytest.raises(ValueError, match="lr_schedule=converge or early_stop"):
        validate_prune(cfg)
    with pytest.raises(ConfigCompositionException) as e:  # a closed choice: nmt_prune/schema.py
        make_cfg(tmp_path, "prune.pct=50", "prune.retrain.until=forever")
    assert "expected one of [epochs, converged]" in str(e.value.__cause__)


TINY_FIT = [
    "trainer.limit_train_batches=4",
    "eval.beam_size=2",
    "trainer.max_epochs=3",
    "lr_schedule=converge",
]


def test_jobs_record_epochs_and_stop_reason(tmp_path):
    """A pruned job retrained until converged, and the dense control (pct=0 after fit) that gets the
    same retraining recipe from the same cached dense model: both say how many epochs ran and why."""
    pruned = run(
        make_cfg(
            tmp_path / "a",
            *TINY_FIT,
            "prune.pct=50",
            "prune.retrain.until=converged",
            "prune.retrain.epochs=3",
            f"paths.cache_dir={tmp_path / 'cache'}",
        )
    )
    control = run(
        make_cfg(
            tmp_path / "b",
            *TINY_FIT,
            "prune.pct=0",
            "prune.timing=after_fit",
            "prune.retrain.until=converged",
            "prune.retrain.epochs=3",
            f"paths.cache_dir={tmp_path / 'cache'}",
        )
    )
    for res in (pruned, control):
        assert res["status"] == "ok"
        t = res["training"]
        assert t["rule"] == "converge" and t["max_epochs"] == 3 and 1 <= t["epochs"] <= 3
        assert t["stop_reason"] in ("max_epochs", "converged") and len(res["history"]) == t["epochs"]
        assert res["dense"]["training"]["rule"] == "converge"
        assert res["dense"]["cache_key"] == pruned["dense"]["cache_key"]
    assert control["prune"]["n_pruned"] == 0 and control["sparsity"] < 0.01
    assert pruned["history"][0]["lr"] == pytest.approx(0.5 * 0.003)  # retrain.lr_factor x optim.lr
    assert control["history"][0]["lr"] == pytest.approx(0.5 * 0.003)
