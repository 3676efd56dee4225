"""Pruning schedules: formulas, exact realised sparsity per event, monotone masks, regrowth,
Han et al.'s dropout adjustment, weight penalties, and schedules end to end."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from callbacks.masking import han_dropout_rates, masks_from_checkpoint
from callbacks.scheduled import ScheduledPruning
from nmt_prune import baseline
from nmt_prune import schedules as S
from nmt_prune.experiment import run
from nmt_prune.init import init_weights
from nmt_prune.model import Seq2Seq
from nmt_prune.module import NMTModule
from tests.conftest import FAST, ROOT, make_cfg, quiet_trainer


def _prune_cfg(**nodes) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "prune" / "default.yaml"))
    for key, value in nodes.items():
        if isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


# ----------------------------------------------------------------------------- formulas
def test_gradual_is_zhu_gupta_eq1_at_every_event_first_and_last_included():
    cfg = _prune_cfg(gradual={"initial_pct": 10, "start_epoch": 1, "end_epoch": 3, "every_steps": 7})
    sch = S.build("gradual", 90, cfg, steps_per_epoch=20, epochs=4)
    t0, dt, n = 20, 7, (60 - 20) // 7
    assert sch.events == tuple(t0 + i * dt for i in range(n + 1))
    for t in sch.events:
        assert sch(t) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - (t - t0) / (n * dt)) ** 3, abs=1e-12)
    assert sch(sch.events[0]) == pytest.approx(0.1) and sch(sch.events[-1]) == 0.9  # exactly s_f
    assert sch(t0 - 1) == 0.0 and sch(79) == 0.9  # dense before t0, s_f after the last event
    assert sch(t0 + 3) == sch(t0)  # between events: the value of the last event


def test_linear_adds_equal_increments_every_m_steps():
    cfg = _prune_cfg(linear={"initial_pct": 10, "increments": 4, "every_steps": 5, "start_epoch": 0})
    sch = S.build("linear", 90, cfg, steps_per_epoch=10, epochs=3)
    assert sch.events == (0, 5, 10, 15, 20)
    assert [sch(t) for t in sch.events] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert sch(sch.events[-1]) == 0.9 and sch(29) == 0.9 and sch(7) == pytest.approx(0.3)


def test_iterative_rounds_equal_steps_or_given_targets_and_epochs():
    sch = S.build("iterative", 90, _prune_cfg(), steps_per_epoch=10, epochs=6)  # 3 rounds x 2 epochs
    assert sch.events == (0, 20, 40)
    assert [sch(t) for t in sch.events] == pytest.approx([0.3, 0.6, 0.9])
    assert sch(40) == 0.9 and sch(19) == pytest.approx(0.3)
    cfg = _prune_cfg(iterative={"rounds": 3, "targets": [50, 80, 90], "epochs": [1, 2, 1]})
    sch = S.build("iterative", 90, cfg, steps_per_epoch=10, epochs=4)
    assert sch.events == (0, 10, 30) and [sch(t) for t in sch.events] == pytest.approx([0.5, 0.8, 0.9])
    assert S.fit_epochs("iterative", cfg) == 4 and S.fit_epochs("gradual", cfg) == cfg["retrain"]["epochs"]


@pytest.mark.parametrize(
    ("name", "nodes", "message"),
    [
        ("gradual", {"gradual": {"end_epoch": 9}}, r"end_epoch=9.*not inside the fit"),
        ("gradual", {"gradual": {"end_epoch": 0.001}}, r"shorter than every_steps=1\b"),
        ("gradual", {"gradual": {"end_epoch": 0.01, "every_steps": 100}}, r"shorter than every_steps=100"),
        ("gradual", {"gradual": {"initial_pct": 95}}, r"initial_pct=95.*\[0, 90\]"),
        ("linear", {"linear": {"increments": 50, "every_steps": 10}}, r"increments 50.*not inside the fit"),
        ("iterative", {"iterative": {"targets": [50, 90]}}, r"2 values for 3 rounds"),
        ("iterative", {"iterative": {"targets": [50, 40, 90]}}, r"non-decreasing"),
        ("iterative", {"iterative": {"targets": [30, 60, 80]}}, r"end at prune.pct=90"),
        ("iterative", {"iterative": {"epochs": [1, 2]}}, r"prune.iterative.epochs=\[1, 2\]"),
        ("cubic", {}, r"prune.schedule='cubic'.*one_shot, iterative, gradual, linear"),
    ],
)
def test_schedule_errors_name_key_and_value(name, nodes, message):
    with pytest.raises(ValueError, match=message):
        S.build(name, 90, _prune_cfg(**nodes), steps_per_epoch=100, epochs=4)


def test_han_dropout_formula():
    assert S.han_dropout(0.5, 100, 25) == pytest.approx(0.25)
    assert S.han_dropout(0.3, 10, 10) == pytest.approx(0.3)


# ----------------------------------------------------------------------------- callback in a fit
class Snapshots(ScheduledPruning):
    """Records the masks after every event."""

    def prune_event(self, trainer, pl_module, step):
        super().prune_event(trainer, pl_module, step)
        self.snaps = getattr(self, "snaps", []) + [{n: m.clone() for n, m in self.masks.masks.items()}]


def _module(dm, optim="torch.optim.Adam", **extra):
    module = NMTModule(
        model={"emb_size": 8, "hidden_size": 12, "layers": 2, "dropout": 0.3},
        optim={"_target_": optim, "_partial_": True, "lr": 0.01},
        lr_schedule={"name": "none"},
        eval={"val_bleu": False},
        data_state=dm.state(),
        **extra,
    )
    init_weights(module.model, "uniform", 0.1)
    return module


@pytest.mark.parametrize("scheme", ["blind", "uniform", "distribution"])
def test_each_event_reaches_the_target_exactly_and_masks_only_grow(toy_dm, scheme):
    steps = len(toy_dm.train_dataloader())  # 300 pairs / 16 = 19
    cfg = _prune_cfg(gradual={"initial_pct": 20, "start_epoch": 0, "end_epoch": 1.5, "every_steps": 4})
    sch = S.build("gradual", 85, cfg, steps_per_epoch=steps, epochs=2)
    pruner = Snapshots(sch, "magnitude", scheme, 0.85)
    module = _module(toy_dm)
    trainer = quiet_trainer(max_epochs=2, callbacks=[pruner])
    trainer.fit(module, datamodule=toy_dm)
    assert [e["step"] for e in pruner.events] == list(sch.events)
    n = pruner.masks.n_masked()
    for event, _snap in zip(pruner.events, pruner.snaps):
        assert event["n_pruned"] == round(sch(event["step"]) * n)  # exact count
        assert event["sparsity"] == pytest.approx(event["n_pruned"] / n, abs=1e-12)  # zeros in the model
    for before, after in zip(pruner.snaps, pruner.snaps[1:]):
        assert all(torch.all(after[k] <= before[k]) for k in before)  # kept(after) implies kept(before)
    params = dict(module.model.named_parameters())
    assert all(torch.all(params[k][~m] == 0) for k, m in pruner.masks.masks.items())
    assert module.at_target is True


def test_iterative_threshold_prunes_below_it_capped_at_pct(toy_dm):
    sch = S.build(
        "iterative", 60, _prune_cfg(iterative={"rounds": 2, "epochs": 1}), len(toy_dm.train_dataloader()), 2
    )
    pruner = Snapshots(sch, "magnitude", "blind", 0.6, threshold=0.05)
    module = _module(toy_dm)
    first = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer = quiet_trainer(max_epochs=2, callbacks=[pruner])
    trainer.fit(module, datamodule=toy_dm)
    below = sum(int((first[n].abs() < 0.05).sum()) for n in pruner.snaps[0])
    assert pruner.events[0]["n_pruned"] == below  # round 1: exactly the weights below the threshold
    assert pruner.events[1]["n_pruned"] >= below
    assert pruner.events[1]["n_pruned"] <= round(0.6 * pruner.masks.n_masked())  # the cap


def _fake(model):
    trainer = SimpleNamespace(datamodule=None, current_epoch=0, global_step=0, loggers=[])
    return trainer, SimpleNamespace(model=model, at_target=None)


@pytest.mark.parametrize("regrow", [False, True])
def test_regrowth_brings_back_weights_only_when_switched_on(regrow):
    torch.manual_seed(0)
    model = Seq2Seq(23, 29, emb_size=8, hidden_size=12, layers=2, dropout=0.0)
    init_weights(model, "uniform", 0.1)
    sch = S.Schedule("two", 0.5, (0, 1), lambda t: 0.25 if t < 1 else 0.5)
    pruner = ScheduledPruning(sch, "magnitude", "blind", 0.5, regrow=regrow)
    trainer, pl_module = _fake(model)
    values = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruner.prune_event(trainer, pl_module, 0)
    first = {n: m.clone() for n, m in pruner.masks.masks.items()}
    with torch.no_grad():  # training shrinks the kept weights below what was pruned at step 0
        for p in model.parameters():
            p.mul_(0.01)
    pruner.prune_event(trainer, pl_module, 1)
    n = pruner.masks.n_masked()
    assert pruner.masks.n_pruned() == round(0.5 * n)
    grew = {k: first[k] < pruner.masks.masks[k] for k in first}  # pruned at 0, kept at 1
    n_grew = sum(int(g.sum()) for g in grew.values())
    params = dict(model.named_parameters())
    if regrow:
        assert n_grew > 0
        for k, g in grew.items():  # back with the value it was pruned at
            assert torch.equal(params[k][g], values[k][g]), k
    else:
        assert n_grew == 0


def test_dropout_adjustment_per_site_and_it_is_wired(toy_dm):
    model = Seq2Seq(23, 29, emb_size=8, hidden_size=12, layers=3, dropout=0.4)
    init_weights(model, "uniform", 0.1)
    sch = S.Schedule("once", 0.7, (0,), lambda t: 0.7)
    pruner = ScheduledPruning(sch, "magnitude", "uniform", 0.7, dropout_adjust=True)
    trainer, pl_module = _fake(model)
    pruner.prune_event(trainer, pl_module, 0)
    m = pruner.masks.masks
    expect = {
        "encoder.layer0": m["encoder.weight_ih_l0"].float().mean(),
        "encoder.layer2": m["encoder.weight_ih_l2"].float().mean(),
        "decoder.layer0": m["decoder.0.weight_ih"][:, :8].float().mean(),  # embedding columns only
        "decoder.layer1": m["decoder.1.weight_ih"].float().mean(),
        "softmax": m["generator.weight"].float().mean(),
    }
    for site, kept in expect.items():
        assert model.dropout_p[site] == pytest.approx(0.4 * math.sqrt(float(kept))), site
    assert model.encoder.dropout == pytest.approx(
        (model.dropout_p["encoder.layer1"] + model.dropout_p["encoder.layer2"]) / 2
    )
    assert han_dropout_rates(model, pruner.masks, pruner.base_dropout) == model.dropout_p
    model.set_dropout({"softmax": 1.0})  # the site really is the dropout on h~_t
    model.train()
    src, tgt = torch.randint(4, 23, (2, 5)), torch.randint(4, 29, (2, 4))
    assert torch.all(model.attentional_states(tgt, model.encode(src, torch.tensor([5, 5]))) == 0)
    with pytest.raises(KeyError, match="valid"):
        model.set_dropout({"decoder": 0.1})


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_weight_penalty_is_added_to_the_loss(toy_dm, kind):
    module = _module(toy_dm, weight_penalty={"type": kind, "strength": 0.01})
    ws = [p for p in module.model.parameters() if p.dim() >= 2]
    expect = (
        sum(w.abs().sum() for w in ws) * 0.01 if kind == "l1" else sum(w.pow(2).sum() for w in ws) * 0.005
    )
    assert float(module.penalty().detach()) == pytest.approx(float(expect.detach()), rel=1e-6)
    batch = next(iter(toy_dm.train_dataloader()))
    module.model.eval()  # no dropout: the two losses see the same network
    nll = module.nll(batch, module.hparams.label_smoothing) / batch["ntok"]
    module.log = lambda *a, **k: None
    loss = module.training_step(batch, 0).detach()
    assert float(loss) == pytest.approx(float((nll + expect).detach()), rel=1e-6)
    with pytest.raises(ValueError, match=r"weight_penalty.type='l3'.*none, l1, l2"):
        _module(toy_dm, weight_penalty={"type": "l3", "strength": 0.1})


def test_weight_penalty_off_keeps_the_dense_cache_key(tmp_path):
    off = baseline.cache_key(make_cfg(tmp_path))
    assert baseline.cache_key(make_cfg(tmp_path, "loss.weight_penalty.type=l1")) == off  # strength 0
    on = baseline.cache_key(
        make_cfg(tmp_path, "loss.weight_penalty.type=l1", "loss.weight_penalty.strength=1e-5")
    )
    assert on != off


# ----------------------------------------------------------------------------- end to end
def test_iterative_after_fit_end_to_end(tmp_path):
    cfg = make_cfg(
        tmp_path,
        *FAST,
        "prune.pct=75",
        "prune.schedule=iterative",
        "prune.iterative.rounds=3",
        "prune.iterative.epochs=1",
        "prune.dropout_adjust=true",
        "model.dropout=0.3",
    )
    out = run(cfg)
    assert out["status"] == "ok" and out["prune"]["timing"] == "after_fit"
    events = out["prune"]["events"]
    assert [e["target"] for e in events] == pytest.approx([0.25, 0.5, 0.75])
    assert [e["epoch"] for e in events] == [0, 1, 2] and len(out["history"]) == 3
    n = out["prune"]["n_prunable"]
    assert [e["n_pruned"] for e in events] == [round(t * n) for t in (0.25, 0.5, 0.75)]
    assert out["sparsity"] == pytest.approx(0.75, abs=1e-4) and out["pruned"] is None
    assert events[-1]["dropout"]["softmax"] < events[0]["dropout"]["softmax"] < 0.3  # shrinks with C_r
    masks = masks_from_checkpoint(out["checkpoint"])
    assert masks.n_pruned() == round(0.75 * n)


def test_gradual_from_scratch_end_to_end(tmp_path):
    out = run(
        make_cfg(
            tmp_path,
            *FAST,
            "prune.pct=80",
            "prune.schedule=gradual",
            "prune.timing=during",
            "prune.gradual.every_steps=2",
            "prune.gradual.end_epoch=1",
        )
    )
    assert out["status"] == "ok" and out["prune"]["timing"] == "during"
    events = out["prune"]["events"]
    # 300 pairs / batch 64 = 5 steps per epoch: end_epoch=1 is step 5, n = 5 // 2 = 2 events after t0
    assert [e["step"] for e in events] == [0, 2, 4] and events[-1]["target"] == 0.8
    assert out["sparsity"] == pytest.approx(0.8, abs=1e-4) and len(out["history"]) == 2
    assert not (tmp_path / "cache" / "dense").exists()  # from scratch: no dense baseline


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prune.schedule=gradual", "prune.method=snip"], r"snip with prune.schedule=gradual"),
        (["prune.schedule=gradual", "prune.timing=at_init"], r"schedule=gradual with prune.timing=at_init"),
        (["prune.timing=during"], r"timing=during with prune.schedule=one_shot"),
        (["prune.schedule=iterative", "prune.timing=during"], r"timing=during with prune.schedule=iterative"),
        (["prune.schedule=gradual", "prune.rewind=init"], r"rewind=init with prune.schedule=gradual"),
        (["prune.regrow=true"], r"regrow=true with prune.schedule=one_shot"),
        (["prune.schedule=gradual", "prune.regrow=true", "prune.method=obd"], r"regrow=true.*method=obd"),
        (["prune.iterative.threshold=0.1"], r"threshold=0.1 needs prune.schedule=iterative"),
        (
            ["prune.schedule=gradual", "prune.gradual.end_epoch=5", "prune.gradual.every_steps=2"],
            r"end_epoch=5.*not inside",
        ),
        (["prune.schedule=gradual", "prune.gradual.every_steps=100"], r"shorter than every_steps=100"),
        (["prune.schedule=linear", "prune.linear.increments=500"], r"increments 500.*not inside the fit"),
    ],
)
def test_bad_schedules_fail_before_any_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(make_cfg(tmp_path, *FAST, "prune.pct=80", *overrides))
    assert not (tmp_path / "cache" / "dense").exists()


def test_default_spacing_gives_ten_gradual_intervals_and_linear_within_three_quarters():
    sch = S.build("gradual", 90, _prune_cfg(), steps_per_epoch=47, epochs=2)  # end 3/4 of 94 = 70 steps
    assert sch.events == tuple(range(0, 71, 7)) and sch(sch.events[-1]) == 0.9
    sch = S.build("linear", 90, _prune_cfg(), steps_per_epoch=47, epochs=2)  # 8 increments
    assert len(sch.events) == 9 and sch.events[-1] <= 70 and sch(sch.events[-1]) == 0.9


def test_a_schedule_cut_short_fails_the_fit_instead_of_reporting_a_lower_sparsity(toy_dm):
    steps = len(toy_dm.train_dataloader())
    cfg = _prune_cfg(gradual={"initial_pct": 20, "start_epoch": 0, "end_epoch": 1.5, "every_steps": 4})
    sch = S.build("gradual", 85, cfg, steps_per_epoch=steps, epochs=2)
    pruner = ScheduledPruning(sch, "magnitude", "blind", 0.85)
    trainer = quiet_trainer(max_epochs=1, callbacks=[pruner])
    with pytest.raises(RuntimeError, match=r"schedule did not finish.*target 0.8500"):
        trainer.fit(_module(toy_dm), datamodule=toy_dm)  # one epoch of a schedule planned over 1.5


@pytest.mark.parametrize("trainer", [["+trainer.accumulate_grad_batches=2"], ["trainer.overfit_batches=3"]])
def test_schedule_counts_the_optimizer_steps_lightning_runs(tmp_path, trainer):
    iterative = ["prune.schedule=iterative", "prune.iterative.rounds=3", "prune.iterative.epochs=1"]
    out = run(make_cfg(tmp_path, *FAST, "prune.pct=75", *iterative, *trainer))
    assert out["status"] == "ok", out.get("error")
    assert [e["epoch"] for e in out["prune"]["events"]] == [0, 1, 2]  # one round per epoch, as planned
    assert out["sparsity"] == pytest.approx(0.75, abs=1e-3)


def test_reverse_source_off_keeps_the_dense_cache_key(tmp_path):
    off = baseline.cache_key(make_cfg(tmp_path))
    assert baseline.cache_key(make_cfg(tmp_path, "model.reverse_source=false")) == off
    assert baseline.cache_key(make_cfg(tmp_path, "model.reverse_source=true")) != off
