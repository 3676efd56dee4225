"""Prune-after-fit end to end on the toy corpus: sweep, cache, masks in checkpoints, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from callbacks.masking import masks_from_checkpoint
from nmt_prune import criteria
from nmt_prune.experiment import run
from nmt_prune.module import NMTModule
from tests.conftest import FAST, ROOT, TINY, check_masks_hold, make_cfg


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The card's 3x3 multirun, verbatim plus tiny-config overrides."""
    tmp = tmp_path_factory.mktemp("sweep")
    p = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            "prune.scheme=blind,uniform,distribution",
            "prune.pct=50,80,90",
            *TINY,
            f"hydra.sweep.dir={tmp / 'multirun'}",
            f"paths.cache_dir={tmp / 'cache'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    jobs = [json.loads(f.read_text()) for f in sorted((tmp / "multirun").glob("*/results.json"))]
    return tmp, jobs


@pytest.mark.integration  # an end-to-end run or subprocess: make test leaves it to CI
def test_sweep_runs_every_job_with_exact_sparsity(sweep):
    tmp, jobs = sweep
    assert len(jobs) == 9 and all(j["status"] == "ok" for j in jobs)
    grid = {(j["prune"]["scheme"], j["prune"]["pct"]) for j in jobs}
    assert grid == {(s, p) for s in ("blind", "uniform", "distribution") for p in (50, 80, 90)}
    for j in jobs:
        amount = j["prune"]["pct"] / 100
        assert j["prune"]["n_pruned"] == round(amount * j["prune"]["n_prunable"])
        assert j["sparsity"] == pytest.approx(amount, abs=1e-4)  # zeros in the retrained weights
        assert j["params"]["prunable"] == j["prune"]["n_prunable"]
        for key in ("val_ppl", "test_bleu"):
            assert key in j["pruned"] and key in j["dense"]
        assert set(j["sparsity_by_class"]) >= {"src_embed", "softmax", "attention"}
        check_masks_hold(j["checkpoint"], j)


@pytest.mark.integration  # the multirun fixture: make test leaves it to CI
def test_sweep_trains_the_dense_baseline_once(sweep):
    tmp, jobs = sweep
    entries = [d for d in (tmp / "cache" / "dense").iterdir() if d.is_dir()]
    assert len(entries) == 1 and (entries[0] / "best.ckpt").is_file()  # one entry, no leftovers
    assert {j["dense"]["cache_key"] for j in jobs} == {entries[0].name}
    assert sum(j["dense"]["trained_here"] for j in jobs) == 1
    assert len({j["dense"]["test_bleu"] for j in jobs}) == 1


@pytest.mark.integration  # the multirun fixture: make test leaves it to CI
def test_layer_error_of_every_pruned_job_grows_with_the_amount(sweep):
    """results.json layer_error (nmt_prune/layer_error.py): every pruned class has one, and
    pruning more of a class by magnitude moves its output more."""
    tmp, jobs = sweep
    by = {(j["prune"]["scheme"], j["prune"]["pct"]): j["layer_error"]["by_class"] for j in jobs}
    for err in by.values():
        assert set(err) == set(jobs[0]["sparsity_by_class"]) and all(0 < e < 2 for e in err.values())
    for scheme in ("blind", "uniform", "distribution"):
        for c in by[scheme, 50]:
            assert by[scheme, 50][c] < by[scheme, 90][c], (scheme, c)
    from nmt_prune.report import make_report

    info = make_report(tmp / "multirun", tmp / "report", use_wandb=False)
    assert "layer_error.png" in info["figures"] and (tmp / "report" / "layer_error.png").is_file()


@pytest.mark.integration  # the multirun fixture: make test leaves it to CI
def test_uniform_prunes_every_class_equally(sweep):
    # (how blind and distribution differ needs trained, unequal classes: tests/test_allocation.py)
    tmp, jobs = sweep
    for j in jobs:
        fracs = list(j["sparsity_by_class"].values())
        if j["prune"]["scheme"] == "uniform":
            assert max(fracs) - min(fracs) < 0.02


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pruned")
    cfg = make_cfg(tmp, *FAST, "prune.pct=70", "prune.retrain.epochs=2", "prune.scheme=uniform")
    return tmp, run(cfg)


@pytest.mark.integration  # an end-to-end run or subprocess: make test leaves it to CI
def test_masks_survive_checkpoint_in_a_fresh_process(pruned_run, tmp_path):
    tmp, res = pruned_run
    check_masks_hold(res["checkpoint"], res)
    src = sorted((tmp / "cache").glob("toy-v*"))[0] / "test.src"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmt_prune.translate",
            res["checkpoint"],
            str(src),
            str(tmp_path / "o.txt"),
            "--beam",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "o.txt").read_text() == (tmp / "out" / "hypotheses.test.txt").read_text()
    module = NMTModule.from_checkpoint(res["checkpoint"])
    masks = masks_from_checkpoint(res["checkpoint"])
    rep = masks.report(module.model, module.model.weight_classes())
    assert rep["sparsity"] == pytest.approx(0.7, abs=1e-4)


def test_resume_mid_retraining_keeps_the_masks(pruned_run, tmp_path):
    tmp, res = pruned_run
    last = str(Path(res["checkpoint"]).with_name("last.ckpt"))
    before = masks_from_checkpoint(last)
    out = run(
        make_cfg(
            tmp,
            *FAST,
            "prune.pct=70",
            "prune.retrain.epochs=3",
            "prune.scheme=uniform",
            f"ckpt_path={last}",
            f"paths.output_dir={tmp_path / 'resumed'}",
        )
    )
    assert [h["epoch"] for h in out["history"]] == [0, 1, 2]  # epochs 0-1 restored, 2 trained
    after = masks_from_checkpoint(out["checkpoint"])
    assert all(torch.equal(before.masks[n], after.masks[n]) for n in before.masks)
    assert out["dense"]["trained_here"] is False  # the cached baseline of the first run


def test_evaluate_only_and_baseline_path(pruned_run, tmp_path):
    tmp, res = pruned_run
    dense_ckpt = res["dense"]["checkpoint"]
    out = run(
        make_cfg(tmp_path, *FAST, "prune.pct=60", "prune.retrain.epochs=0", f"prune.baseline={dense_ckpt}")
    )
    assert out["status"] == "ok" and out["timings"]["retrain_s"] == 0.0
    assert out["test_bleu"] == out["pruned"]["test_bleu"] and out["dense"]["cache_key"] is None
    assert out["dense"]["test_bleu"] == pytest.approx(res["dense"]["test_bleu"])  # measured, same model
    assert not (tmp_path / "cache" / "dense").exists()  # nothing trained
    check_masks_hold(out["checkpoint"], out)


@pytest.mark.parametrize("rewind", ["init", "reinit"])
def test_rewind_trains_from_theta0_or_fresh_init_with_the_mask(pruned_run, tmp_path, rewind):
    tmp, res = pruned_run
    out = run(
        make_cfg(
            tmp,
            *FAST,
            "prune.pct=70",
            "prune.scheme=uniform",
            f"prune.rewind={rewind}",
            f"paths.output_dir={tmp_path / 'o'}",
        )
    )
    assert out["status"] == "ok" and out["sparsity"] == pytest.approx(0.7, abs=1e-4)
    assert out["dense"]["cache_key"] == res["dense"]["cache_key"]  # the same trained dense model
    assert len(out["history"]) == 2  # the full training recipe (trainer.max_epochs), not retrain.epochs


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prune.pct=100", r"prune.pct=100.*\[0, 100\)"),
        ("prune.pct=-5", r"prune.pct=-5"),
        ("prune.exclude=[softmx]", r"softmx.*valid choices.*softmax"),
        ("prune.exclude=softmx", r"\['softmx'\].*valid choices.*softmax"),
        ("prune.retrain.epochs=-1", r"prune.retrain.epochs=-1"),
    ],
)
def test_bad_prune_config_fails_before_any_work(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        run(make_cfg(tmp_path, "prune.pct=50", override))
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["status"] == "failed"
    assert not (tmp_path / "cache").exists()  # failed before data or training


def test_incompatible_combinations_are_named(tmp_path):
    with pytest.raises(ValueError, match="random.*distribution"):
        run(make_cfg(tmp_path, "prune.pct=50", "prune.method=random", "prune.scheme=distribution"))
    with pytest.raises(ValueError, match="prune.pct=0"):
        run(make_cfg(tmp_path, "prune.rewind=init"))
    with pytest.raises(ValueError, match="prune.baseline=/nonexistent.ckpt does not exist"):  # ConfigError
        run(make_cfg(tmp_path, "prune.pct=50", "prune.baseline=/nonexistent.ckpt"))


def test_sparsity_and_pruned_metrics_reach_the_logger(tmp_path):
    out = run(make_cfg(tmp_path, *FAST, "logger=csv", "prune.pct=50"))
    header = (tmp_path / "out" / "csv" / "metrics.csv").read_text().split("\n")[0].split(",")
    for key in (
        "prune/sparsity",
        "prune/sparsity/softmax",
        "prune/sparsity/encoder.layer0",
        "pruned/val_ppl",
        "pruned/test_bleu",
        "dense/test_bleu",
        "val/ppl",
        "test/bleu",
    ):
        assert key in header, key
    assert out["status"] == "ok"


@pytest.mark.parametrize(
    ("overrides", "timing"),
    [
        (["prune.method=snip"], "at_init"),
        (["prune.method=obd"], "after_fit"),
        (["prune.method=random", "prune.timing=at_init"], "at_init"),
        (
            [
                "prune.method=obd",
                "prune.obd.estimator=ggn_mc",
                "prune.obd.sentences=20",
                "prune.scheme=distribution",
            ],
            "after_fit",
        ),
    ],
)
def test_obd_and_snip_run_end_to_end(tmp_path, overrides, timing):
    out = run(make_cfg(tmp_path, *FAST, "prune.pct=80", *overrides))
    assert out["status"] == "ok" and out["prune"]["timing"] == timing
    assert out["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert out["prune"]["n_pruned"] == round(0.8 * out["prune"]["n_prunable"])
    assert out["timings"]["saliency_s"] > 0
    if "prune.method=snip" in overrides:
        assert out["prune"]["data_used"]["batches"] == 1 and out["prune"]["data_used"]["sentences"] > 0
        assert out["pruned"] is None and len(out["history"]) == 2  # trained from init, full recipe
    if "prune.method=obd" in overrides:
        assert out["prune"]["data_used"]["sentences"] == min(out["prune"]["obd"]["sentences"], 300)
    check_masks_hold(out["checkpoint"], out)


@pytest.mark.parametrize("method", criteria.NAMES)
def test_every_registered_criterion_runs_end_to_end_at_every_timing_it_allows(tmp_path, method):
    """Read from the registry: a new criterion is tested here without touching this file."""
    crit = criteria.REGISTRY[method]
    for timing in crit.timings:
        extra = ["prune.schedule=gradual", "prune.retrain.epochs=2"] if timing == "during" else []
        if timing == "during" and not crit.schedulable:
            continue
        out = run(
            make_cfg(
                tmp_path / timing,
                *FAST,
                "prune.pct=70",
                f"prune.method={method}",
                f"prune.timing={timing}",
                *extra,
            )
        )
        assert out["status"] == "ok" and out["prune"]["timing"] == timing, out.get("error")
        assert out["prune"]["n_pruned"] == round(0.7 * out["prune"]["n_prunable"])
        # zeros also count the embeddings' padding rows, which a non-magnitude criterion may keep
        assert out["sparsity"] == pytest.approx(0.7, abs=1e-3)
        check_masks_hold(out["checkpoint"], out)
    refused = [t for t in criteria.TIMINGS if t not in crit.timings]
    for timing in refused:
        with pytest.raises(ValueError, match=f"prune.method={method} with prune.timing={timing}"):
            run(
                make_cfg(
                    tmp_path / "refused", "prune.pct=70", f"prune.method={method}", f"prune.timing={timing}"
                )
            )


@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("prune.scheme=blnd", "[blind, uniform, distribution]"),
        ("prune.method=obd2", "[magnitude, random, obd, snip, taylor, obs]"),
        ("prune.rewind=start", "[none, init, reinit]"),
        ("prune.obd.estimator=hutch", "[fisher, ggn_mc, exact]"),
        ("prune.timing=later", "[auto, after_fit, at_init, during]"),
        ("prune.schedule=cubic", "[one_shot, iterative, gradual, linear]"),
        ("prune.retrain.until=forever", "[epochs, converged]"),
        ("prune.rpp.penalty=l2", "[proximal, l1]"),
    ],
)
def test_a_closed_choice_fails_at_composition(tmp_path, override, choices):
    """nmt_prune/schema.py: the value is refused while the config is composed, with the choices,
    which are read from where each is defined (the criterion registry, nmt_prune/names.py)."""
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg(tmp_path, "prune.pct=80", override)
    assert f"expected one of {choices}" in str(e.value.__cause__)
    assert f"full_key: {override.split('=')[0]}" in str(e.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prune.method=snip", "prune.timing=after_fit"], r"snip with prune.timing=after_fit"),
        (
            ["prune.method=taylor", "prune.taylor.batches=0"],
            r"prune.taylor.batches=0; must be an integer >= 1",
        ),
        (["prune.method=obd", "prune.timing=at_init"], r"obd with prune.timing=at_init"),
        (["prune.method=obs", "prune.obs.damp=0"], r"prune.obs.damp=0.0; must be a number > 0"),
        (["prune.method=obs", "prune.obs.sentences=0"], r"prune.obs.sentences=0; must be an integer >= 1"),
        (["prune.method=obs", "prune.schedule=gradual"], r"obs"),
        (["prune.method=snip", "prune.snip.fraction=0"], r"prune.snip.fraction=0"),
        (["prune.method=snip", "prune.snip.batches=0"], r"prune.snip.batches=0; must be an integer >= 1"),
        (["prune.method=snip", "prune.snip.fraction=1.5"], r"prune.snip.fraction=1.5"),
        (["prune.method=snip", "prune.rewind=init"], r"prune.rewind='init' with prune.timing=at_init"),
    ],
)
def test_contradictory_timing_fails_before_work(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(make_cfg(tmp_path, "prune.pct=80", *overrides))
    assert not (tmp_path / "cache").exists()


def test_exact_obd_refuses_a_big_model_before_training(tmp_path):
    with pytest.raises(ValueError, match="exact needs one backward pass per weight"):
        run(
            make_cfg(tmp_path, "model=small", "prune.pct=50", "prune.method=obd", "prune.obd.estimator=exact")
        )
    assert not (tmp_path / "cache" / "dense").exists()


def test_dense_figures_are_measured_with_the_jobs_own_eval_settings(tmp_path):
    """The cached dense model's figures were measured at cache time; a job that decodes otherwise
    (here beam 3 instead of 2) measures them again, so pruned and dense compare like with like."""
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    beam2 = run(make_cfg(tmp_path / "a", *TINY, "prune.pct=50", "prune.retrain.epochs=0", cache))
    again = run(make_cfg(tmp_path / "b", *TINY, "prune.pct=80", "prune.retrain.epochs=0", cache))
    beam3 = run(
        make_cfg(tmp_path / "c", *TINY, "prune.pct=50", "prune.retrain.epochs=0", cache, "eval.beam_size=3")
    )
    assert beam2["dense"]["trained_here"] and beam2["dense"]["eval"]["beam_size"] == 2
    assert not again["dense"]["measured_here"] and again["dense"]["test_bleu"] == beam2["dense"]["test_bleu"]
    assert beam3["dense"]["measured_here"] and beam3["dense"]["eval"]["beam_size"] == 3
    assert beam3["dense"]["test_ppl"] == pytest.approx(beam2["dense"]["test_ppl"])  # the same model


def test_pruned_weights_stay_exactly_zero_through_bf16_steps(tmp_path):
    """trainer.precision=bf16-mixed (CPU autocast): the optimizer still steps fp32 weights, and the
    masks re-zero them after every step, so a pruned weight is exactly 0, not a small bf16 value."""
    res = run(make_cfg(tmp_path, *TINY, "prune.pct=70", "+trainer.precision=bf16-mixed"))
    assert res["status"] == "ok" and res["sparsity"] == pytest.approx(0.7, abs=1e-4)
    check_masks_hold(res["checkpoint"], res)
    state = torch.load(res["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def test_obs_moves_the_kept_weights_and_lowers_every_layers_output_error(tmp_path):
    """In the pipeline, layer-wise OBS (retrain.epochs=0: the pruned model is the result) keeps the
    allocation's count per class and moves the kept weights: each class's output error on
    validation sentences (results.json layer_error) is below magnitude pruning's."""
    res = {}
    for method in ("magnitude", "obs"):
        res[method] = run(
            make_cfg(
                tmp_path,
                *FAST,
                "prune.pct=80",
                "prune.scheme=uniform",
                f"prune.method={method}",
                "prune.retrain.epochs=0",
            )
        )
    mag, obs = res["magnitude"], res["obs"]
    assert obs["sparsity_by_class"] == mag["sparsity_by_class"]  # uniform: the same count per class
    for cls, err in obs["layer_error"]["by_class"].items():
        if cls not in ("src_embed", "tgt_embed"):  # lookups: no update, another ranking
            assert err < mag["layer_error"]["by_class"][cls], cls
    check_masks_hold(obs["checkpoint"], obs)


def test_results_keep_every_retraining_epoch_when_the_best_is_not_the_last(tmp_path):
    """The test loads the best checkpoint back (with the history it had then): results.json must
    still hold every epoch the retraining ran, and its time."""
    out = run(
        make_cfg(tmp_path, *FAST, "prune.pct=50", "prune.retrain.epochs=3", "prune.retrain.lr_factor=300")
    )
    assert [h["epoch"] for h in out["history"]] == [0, 1, 2]
    ppl = [h["val_ppl"] for h in out["history"]]
    assert ppl.index(min(ppl)) < 2  # the case this test is about: the LR blows retraining up
    assert out["timings"]["retrain_s"] >= sum(h["train_s"] for h in out["history"])
