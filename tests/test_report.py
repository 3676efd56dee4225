"""The sweep report on a directory of results.json files written here: tables, every figure."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from nmt_prune.dead import dead_capacity
from nmt_prune.masks import STATE_KEY
from nmt_prune.report import collect, main, make_report
from nmt_prune.report_size import size_points

CLASSES = [
    "src_embed",
    "tgt_embed",
    "encoder.layer0",
    "encoder.layer1",
    "decoder.layer0",
    "decoder.layer1",
    "attention",
    "softmax",
]
PNG = b"\x89PNG\r\n\x1a\n"
_CLASSES_BY_NAME = {
    "src_embed": ["src_embed.weight"],
    "encoder.layer0": ["encoder.weight_ih_l0"],
    "softmax": ["generator.weight"],
    "attention": ["attn_in.weight"],  # W_a: the attention-keys panel
}


def _random_masks(g: torch.Generator, pct: float) -> dict[str, torch.Tensor]:
    return {n[0]: torch.rand(16, 4, generator=g) > pct / 100 for n in _CLASSES_BY_NAME.values()}


def _job(root: Path, name: str, **kw) -> None:
    d = root / name
    d.mkdir(parents=True)
    pct, method, scheme = kw.get("pct", 50), kw.get("method", "magnitude"), kw.get("scheme", "blind")
    timing = kw.get("timing", "after_fit")
    g = torch.Generator().manual_seed(len(name))
    prune = {
        "method": method,
        "scheme": scheme,
        "pct": pct,
        "timing": timing,
        "schedule": "one_shot",
        "rewind": "none",
        "retrain": {"epochs": kw.get("epochs", 2)},
        "only": kw.get("only"),
        "snip": {"fraction": kw.get("fraction", 1)},
        "data_used": {"sentences": 64 * kw.get("fraction", 1)}
        if method == "snip"
        else {"sentences": kw.get("obd_sentences", 1000)}
        if method == "obd"
        else {},
        "max_pruned_abs_by_class": {c: 0.001 * pct for c in CLASSES},
    }
    if kw.get("rpp"):  # a sparsifying phase before the pruning (nmt_prune/rpp.py)
        prune["rpp"] = kw["rpp"]
    if kw.get("lr_factor"):
        prune["retrain"]["lr_factor"] = kw["lr_factor"]
    if kw.get("until"):
        prune["retrain"]["until"] = kw["until"]
    bleu = 30 - pct / 5 + float(torch.rand(1, generator=g))
    res = {
        "status": "ok",
        "overrides": [f"prune.pct={pct}"],
        "config": {
            "seed": kw.get("seed", 1),
            "init": {"scheme": kw.get("init", "uniform")},
            "logger": {"name": "none"},
            # the config: what was asked (results.json's prune adds what was measured)
            "prune": {k: v for k, v in prune.items() if k not in ("data_used", "max_pruned_abs_by_class")},
        },
        "prune": prune,
        "sparsity": pct / 100,
        "sparsity_by_class": {c: pct / 100 + 0.01 * i for i, c in enumerate(CLASSES)},
        "test_bleu": bleu,
        "test_bleu_lc": bleu + 0.3,
        "test_ppl": 5 + pct / 10,
        "val_ppl": 5 + pct / 10,
        "pruned": {"test_bleu": bleu - 5, "test_ppl": 6 + pct},
        "dense": {"test_bleu": 31.0, "test_ppl": 5.2},
        "timings": {"train_s": 0, "prune_s": 1.0, "saliency_s": 0.5, "retrain_s": 200.0},
        "history": [{"epoch": e, "val_ppl": 5 + pct / 10 + 3 / (e + 1)} for e in range(kw.get("epochs", 2))],
    }
    if kw.get("ckpt"):  # pruned jobs with masks also have dead-capacity figures, from the real function
        counts = torch.arange(1, 17)
        res["dead"] = dead_capacity(_random_masks(g, pct), _CLASSES_BY_NAME, counts, {"src_embed": counts})
        res["layer_error"] = {"by_class": {c: pct / 100 * (1 + 0.1 * i) for i, c in enumerate(CLASSES)}}
        masks = {
            "encoder.weight_ih_l0": torch.rand(16, 8, generator=g) > pct / 100,
            "decoder.0.weight_hh": torch.rand(16, 4, generator=g) > pct / 100,
        }
        torch.save({"callbacks": {STATE_KEY: {"masks": masks}}}, d / "best.ckpt")
        res["checkpoint"] = str(d / "best.ckpt")
    if kw.get("only"):  # a one-class job records the layer error of that class
        res["layer_error"] = {"by_class": {kw["only"]: pct / 200}}
    if kw.get("optim"):  # the dense model's training recipe (study_sgd_no_retrain: SGD)
        res["config"]["optim"] = {"_target_": f"torch.optim.{kw['optim']}"}
        res["config"]["loss"] = {"normalize": kw.get("normalize", "token")}
    if kw.get("width"):  # the large-vs-small study: models of several widths, their sizes
        width, nonzero = kw["width"], kw["nonzero"]
        res["config"]["model"] = {"hidden_size": width}
        res["params"] = {"total": kw.get("total", nonzero), "nonzero": nonzero}
        if kw.get("dense"):
            res["prune"] = res["pruned"] = res["dense"] = None
    (d / "results.json").write_text(json.dumps(res))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for scheme in ("blind", "uniform", "distribution"):
        for pct in (50, 80, 90):
            for seed in (1, 2):
                _job(root, f"schemes/{scheme}-{pct}-s{seed}", scheme=scheme, pct=pct, seed=seed, ckpt=True)
    for cls in ("softmax", "attention", "encoder.layer0"):
        for pct in (30, 60, 90):
            _job(root, f"sens/{cls}-{pct}", only=cls, pct=pct, epochs=0)
    for method in ("snip", "random"):
        for init in ("uniform", "xavier_uniform"):
            _job(root, f"init/{method}-{init}", method=method, init=init, pct=90, timing="at_init")
    for frac in (1, 4, 16):
        _job(root, f"frac/snip-{frac}", method="snip", fraction=frac, pct=90, timing="at_init")
    for width, n in ((64, 1_600_000), (128, 3_500_000)):
        _job(root, f"size/dense-{width}", width=width, nonzero=n, dense=True, pct=0)
        _job(
            root,
            f"size/pruned-{width}",
            width=256,
            nonzero=n,
            total=8_270_000,
            scheme="uniform",
            pct=round(100 * (1 - n / 8_270_000), 2),
        )
    for optim, normalize in (("Adam", "token"), ("SGD", "sentence")):
        _job(root, f"recipe/{optim}-70", pct=70, epochs=0, optim=optim, normalize=normalize)
    failed = root / "schemes" / "broken"
    failed.mkdir()
    res = {
        "status": "failed",
        "overrides": ["prune.pct=100"],
        "error": "ValueError: prune.pct=100; must be ...",
    }
    (failed / "results.json").write_text(json.dumps(res))
    killed = root / "schemes" / "killed" / ".hydra"
    killed.mkdir(parents=True)
    (killed / "overrides.yaml").write_text("- prune.pct=95\n")
    return root


def test_report_writes_tables_and_every_figure(sweep):
    info = make_report(sweep, use_wandb=False)
    out = sweep / "report"
    assert info["rows"] == 18 + 9 + 4 + 3 + 4 + 2 + 2 and info["failed"] == 2
    expected = [
        "bleu_vs_sparsity.png",
        "class_sensitivity.png",
        "ppl_vs_magnitude.png",
        "median_bleu_by_group.png",
        "snip_by_init.png",
        "snip_by_fraction.png",
        "class_sparsity_pct50.png",
        "class_sparsity_pct90.png",
        "masks_magnitude_blind.png",
        "masks_magnitude_uniform.png",
        "dead_capacity.png",
        "layer_error.png",
        "size.png",
        "layer_error_vs_sensitivity.png",
        "retrain_curves.png",
        "schemes_by_recipe.png",
    ]
    for name in expected:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
        assert name in info["figures"]
    assert info["notes"] == []  # this sweep has data for every figure
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == info["rows"] and {"job", "status", "test_bleu", "pruned_test_bleu"} <= set(rows[0])
    md = (out / "results.md").read_text()
    failed = md.split("## Failed jobs")[1]
    assert "prune.pct=100" in failed and "killed" in failed and "no results.json" in failed
    jobs_table = md.split("## Medians over seeds")[0]
    assert jobs_table.count("| magnitude/blind |") == 6  # one table row per job
    assert md.count("| magnitude/blind |") == 6 + 3  # and one per pct over its 2 seeds
    dead_cols = {"dead_softmax_words", "dead_token_share", "dead_attention_keys"}
    assert {"epochs", "stop_reason", *dead_cols} <= set(rows[0])
    assert any(r["dead_token_share"] not in ("", None) for r in rows)
    assert any(r["dead_attention_keys"] not in ("", None) for r in rows)


def test_missing_data_skips_figures_with_a_note(tmp_path, capsys):
    _job(tmp_path / "s", "only-one", pct=80)
    main([str(tmp_path / "s"), "--no-wandb"])
    printed = capsys.readouterr().out
    assert "1 jobs (0 failed)" in printed and "skipped class_sensitivity" in printed
    assert (tmp_path / "s" / "report" / "bleu_vs_sparsity.png").read_bytes().startswith(PNG)
    assert not (tmp_path / "s" / "report" / "snip_by_init.png").exists()
    assert "Skipped:" in (tmp_path / "s" / "report" / "results.md").read_text()


def test_report_errors_are_clear(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        make_report(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no results.json"):
        make_report(tmp_path)
    for sweep, message in ((tmp_path / "nope", "SWEEP="), (tmp_path, "no results.json")):
        with pytest.raises(SystemExit) as e:  # the command line: one line, exit 2, no traceback
            main([str(sweep), "--no-wandb"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_collect_reads_any_depth_and_skips_its_own_output(sweep):
    make_report(sweep, use_wandb=False)
    (sweep / "report" / "results.json").write_text("{}")  # nothing under report/ is a job
    assert (
        len(collect(sweep)) == 42
    )  # the fixture's 42 jobs (schemes, sensitivity, init, fraction, size, recipe)


def test_report_logs_figures_and_table_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for pct in (50, 80):
        _job(tmp_path / "s", f"j{pct}", pct=pct)
    info = make_report(tmp_path / "s", use_wandb=True)
    runs = list((tmp_path / "s" / "report" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and "bleu_vs_sparsity.png" in info["figures"]
    record, deadline = b"", time.time() + 60
    while not (b"bleu_vs_sparsity" in record and b"results" in record) and time.time() < deadline:
        time.sleep(0.5)  # W&B's service process writes the offline record after finish() returns
        record = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"bleu_vs_sparsity" in record and b"results" in record


def test_size_points_are_families_at_their_nonzero_counts(sweep):
    _job(
        sweep,
        "size/no-retrain",
        width=256,
        nonzero=10**6,
        total=8_270_000,
        scheme="uniform",
        pct=88,
        epochs=0,
    )
    fam = size_points([r for r in collect(sweep) if "size/" in r["job"]])
    # the no-retraining job at 1M nonzero parameters is a line of its own, not drawn
    assert set(fam) == {"dense", "256 pruned, magnitude/uniform"}
    assert sorted(fam["256 pruned, magnitude/uniform"]) == [1_600_000, 3_500_000]
    # the dense widths, and the pruned jobs' own baseline (one seed: counted once) at 8.27M
    assert sorted(fam["dense"]) == [1_600_000, 3_500_000, 8_270_000] and fam["dense"][8_270_000] == [31.0]
    dense = {r["job"]: r["group"] for r in collect(sweep) if r["method"] == "dense"}
    assert dense == {"size/dense-64": "dense/width 64", "size/dense-128": "dense/width 128"}
    # a converged retraining of the same line: the 2-epoch jobs become their own line, and where
    # converged jobs exist (the dense widths are converged) the fixed budgets are not drawn
    _job(
        sweep,
        "size/conv",
        width=256,
        nonzero=1_200_000,
        total=8_270_000,
        scheme="uniform",
        pct=85,
        until="converged",
    )
    fam = size_points([r for r in collect(sweep) if "size/" in r["job"]])
    assert set(fam) == {"dense", "256 pruned, magnitude/uniform"}
    assert sorted(fam["256 pruned, magnitude/uniform"]) == [1_200_000]
    assert fam["dense"][8_270_000] == [31.0]  # the same dense model (seed 1) counted once
    # a job not retrained under a preset that says `until: converged` (study_no_retrain) is still
    # a no-retraining job: not drawn
    _job(
        sweep,
        "size/no-retrain-conv",
        width=256,
        nonzero=900_000,
        total=8_270_000,
        pct=89,
        epochs=0,
        until="converged",
    )
    assert all(
        900_000 not in pts for pts in size_points([r for r in collect(sweep) if "size/" in r["job"]]).values()
    )
    # the same seed's dense model trained again by other code (another cache key): a second model
    _job(sweep, "size/conv2", width=256, nonzero=1_000_000, total=8_270_000, pct=88, until="converged")
    res = json.loads((sweep / "size/conv2/results.json").read_text())
    res["dense"] |= {"test_bleu": 32.0, "cache_key": "b" * 16}
    (sweep / "size/conv2/results.json").write_text(json.dumps(res))
    fam = size_points([r for r in collect(sweep) if "size/" in r["job"]])
    assert sorted(fam["dense"][8_270_000]) == [31.0, 32.0]


def test_retrain_curves_are_medians_over_seeds_per_epoch(sweep):
    from nmt_prune.report_curves import curves

    lines = curves(collect(sweep))
    # the schemes jobs: 2 seeds and 2 retraining epochs each, identical synthetic histories
    assert lines["magnitude/blind 50%"] == [5 + 5 + 3.0, 5 + 5 + 1.5]
    assert not any("only=" in k for k in lines)  # one-class jobs are not retraining curves


def test_medians_over_seeds_pair_each_job_with_its_dense_model(sweep, tmp_path):
    """medians.csv: per line and pct, the median and range over seeds and the paired differences,
    against the values read straight from the jobs' results.json; a job with an RPP or L1 phase,
    or another retraining LR, is a line of its own, not a seed of the plain one."""
    for i, (kw, name) in enumerate(
        [
            ({"rpp": {"epochs": 2, "lam": 0.02, "penalty": "proximal"}}, "rpp"),
            ({"rpp": {"epochs": 2, "lam": 1e-05, "penalty": "l1"}}, "l1"),
            ({"lr_factor": 0.125}, "lr"),
        ]
    ):
        _job(sweep, f"phase/{name}", scheme="blind", pct=50, seed=3 + i, **kw)
    make_report(sweep, tmp_path / "out", use_wandb=False)
    with (tmp_path / "out" / "medians.csv").open() as f:
        recs = {(r["group"], float(r["pct"])): r for r in csv.DictReader(f)}
    bleu = [
        json.loads((sweep / f"schemes/blind-50-s{s}/results.json").read_text())["test_bleu"] for s in (1, 2)
    ]
    r = recs[("magnitude/blind", 50.0)]
    assert r["n"] == "2" and r["seeds"] == "1 2"
    assert float(r["median"]) == pytest.approx((bleu[0] + bleu[1]) / 2)
    assert float(r["min"]) == pytest.approx(min(bleu)) and float(r["max"]) == pytest.approx(max(bleu))
    assert float(r["median_diff"]) == pytest.approx((bleu[0] + bleu[1]) / 2 - 31.0)  # dense: 31.0
    assert float(r["min_diff"]) == pytest.approx(min(bleu) - 31.0)
    for group in (
        "magnitude/blind/rpp lam=0.02 x2ep",
        "magnitude/blind/l1 lam=1e-05 x2ep",
        "magnitude/blind/retrain lr x0.125",
    ):
        assert recs[(group, 50.0)]["n"] == "1", group
    assert "## Medians over seeds" in (tmp_path / "out" / "results.md").read_text()


def test_a_fixed_retraining_budget_beside_converged_jobs_is_a_line_of_its_own(sweep, tmp_path):
    """study_schedules' one-shot jobs (6 fixed retraining epochs) beside study_oneshot's converged
    ones, same scheme, pct and seed: two lines, each with its own job, never two "seeds" of one;
    the converged line keeps the plain label."""
    _job(sweep, "conv/uniform-80", scheme="uniform", pct=80, seed=1, until="converged", epochs=24)
    _job(sweep, "fixed/uniform-80", scheme="uniform", pct=80, seed=1, epochs=6)
    make_report(sweep, tmp_path / "out", use_wandb=False)
    with (tmp_path / "out" / "medians.csv").open() as f:
        recs = {(r["group"], float(r["pct"])): r for r in csv.DictReader(f)}

    def bleu(job):
        return json.loads((sweep / job / "results.json").read_text())["test_bleu"]

    conv, fixed = recs[("magnitude/uniform", 80.0)], recs[("magnitude/uniform/retrain 6 ep", 80.0)]
    assert (conv["n"], conv["jobs"], fixed["n"], fixed["jobs"]) == ("1", "1", "1", "1")
    assert float(conv["median"]) == pytest.approx(bleu("conv/uniform-80"))
    assert float(fixed["median"]) == pytest.approx(bleu("fixed/uniform-80"))
    labels = {r["job"]: r["group"] for r in collect(sweep)}
    assert labels["schemes/blind-50-s1"] == "magnitude/blind"  # a line of one budget: as before


def test_a_seed_run_twice_counts_once_in_the_medians(sweep, tmp_path):
    """Two presets holding the same job (study_obs and study_no_retrain) must not weigh its seed
    twice: the repeat leaves n, the seeds and the median as they were, and is shown in ``jobs``."""
    import shutil

    make_report(sweep, tmp_path / "before", use_wandb=False)
    shutil.copytree(sweep / "schemes/blind-50-s1", sweep / "repeat/blind-50-s1")
    make_report(sweep, tmp_path / "after", use_wandb=False)

    def rec(out):
        with (tmp_path / out / "medians.csv").open() as f:
            rows = list(csv.DictReader(f))
        return next(r for r in rows if (r["group"], float(r["pct"])) == ("magnitude/blind", 50.0))

    before, after = rec("before"), rec("after")
    assert after["n"] == before["n"] == "2" and after["seeds"] == "1 2"
    assert float(after["median"]) == pytest.approx(float(before["median"]))
    assert (before["jobs"], after["jobs"]) == ("2", "3") and float(after["repeat_spread"]) == 0.0


def test_exact_repeats_are_dropped_for_the_figures_and_differing_ones_kept(sweep):
    import shutil

    from nmt_prune.report_medians import distinct

    n = len(distinct(collect(sweep)))
    shutil.copytree(sweep / "schemes/blind-50-s1", sweep / "repeat/blind-50-s1")
    assert len(collect(sweep)) == n + 1 and len(distinct(collect(sweep))) == n
    f = sweep / "repeat/blind-50-s1/results.json"
    res = json.loads(f.read_text())
    res["test_bleu"] += 0.5  # not the same result: both stay
    f.write_text(json.dumps(res))
    assert len(distinct(collect(sweep))) == n + 1


def test_bleu_vs_sparsity_panels_split_by_retraining_with_every_seed(sweep):
    """Left panel: jobs evaluated right after pruning, and the before-retraining figures of a
    retrained line that has no such jobs; right: the retrained jobs. Values per seed, read from
    the results.json files."""
    from nmt_prune.report_sparsity import panels

    _job(sweep, "noretrain/blind-50", scheme="blind", pct=50, epochs=0, seed=1)
    left, right = panels(collect(sweep)).values()
    res = {s: json.loads((sweep / f"schemes/blind-50-s{s}/results.json").read_text()) for s in (1, 2)}
    assert sorted(right["magnitude/blind"][50.0]) == sorted(r["test_bleu"] for r in res.values())
    alone = json.loads((sweep / "noretrain/blind-50/results.json").read_text())["test_bleu"]
    assert left["magnitude/blind"][50.0] == [alone]  # its own no-retraining job, not the "before"s
    uniform = sorted(
        json.loads((sweep / f"schemes/uniform-80-s{s}/results.json").read_text())["pruned"]["test_bleu"]
        for s in (1, 2)
    )
    assert sorted(left["magnitude/uniform"][80.0]) == uniform  # no job of its own: the "before"s
    assert "snip/blind/at_init" in right and "snip/blind/at_init" not in left  # trained after pruning


def test_obd_on_another_amount_of_data_is_a_line_of_its_own(sweep):
    """OBD's Hessian on the whole training set is another estimate than on the default sample:
    not a seed of the same line (the medians would mix them)."""
    from nmt_prune.report_read import _label

    _job(sweep, "obd/sample", method="obd", pct=50, epochs=0, seed=1)
    _job(sweep, "obd/all", method="obd", pct=50, epochs=0, seed=1, obd_sentences=28998)
    labels = {r["job"]: _label(r) for r in collect(sweep) if r["method"] == "obd"}
    assert labels == {
        "obd/sample": "obd/blind/no retraining",
        "obd/all": "obd/blind/H on 28998 sentences/no retraining",
    }


def test_a_line_is_every_setting_that_changes_results_but_the_seed(tmp_path):
    """Dense models of another precision (study_bf16) or width are lines of their own, not more
    seeds of the study's dense model; one width alone is labelled as before."""
    for name, width, precision in (("fp32", 256, None), ("bf16", 256, "bf16-mixed"), ("w128", 128, None)):
        _job(tmp_path / "s", name, width=width, nonzero=width, dense=True, pct=0)
        if precision:
            f = tmp_path / "s" / name / "results.json"
            res = json.loads(f.read_text())
            res["config"]["trainer"] = {"precision": precision}
            f.write_text(json.dumps(res))
    groups = {r["job"]: r["group"] for r in collect(tmp_path / "s")}
    assert groups == {"fp32": "dense", "bf16": "dense/bf16-mixed", "w128": "dense/width 128"}
    # See et al.'s SGD recipe (study_sgd_no_retrain) prunes another dense model: a line of its
    # own, not a repeat of the Adam line's seed 1 (the report once mixed them in the medians)
    for name, optim, normalize in (("adam", "Adam", "token"), ("sgd", "SGD", "sentence")):
        _job(tmp_path / "r", name, pct=70, epochs=0, seed=1, optim=optim, normalize=normalize)
    lines = {r["job"]: r["group"] for r in collect(tmp_path / "r")}
    assert lines == {
        "adam": "magnitude/blind/no retraining",
        "sgd": "magnitude/blind/optim=SGD/loss=sentence/no retraining",
    }
    # and the figure that sets the two recipes side by side (one panel each)
    from nmt_prune.report_recipe import fig_schemes_by_recipe, scheme_curves

    rows = collect(tmp_path / "r")
    bleu = {r["job"]: r["test_bleu"] for r in rows}
    curves = scheme_curves(rows)
    assert {k: {s: dict(v) for s, v in c.items()} for k, c in curves.items()} == {
        "Adam, token loss": {"blind": {70.0: [bleu["adam"]]}},
        "SGD, sentence loss": {"blind": {70.0: [bleu["sgd"]]}},
    }
    assert fig_schemes_by_recipe(rows, tmp_path) == ["schemes_by_recipe.png"]
    assert (tmp_path / "schemes_by_recipe.png").stat().st_size > 0
    shutil.rmtree(tmp_path / "r" / "sgd")  # one recipe: nothing to set side by side
    assert fig_schemes_by_recipe(collect(tmp_path / "r"), tmp_path)[0].startswith("schemes_by_recipe: ")
    dense = size_points(collect(tmp_path / "s"))["dense"]
    assert sorted(dense) == [128, 256] and len(dense[256]) == 1  # fp32 only: the bf16 model is not drawn
    shutil.rmtree(tmp_path / "s" / "w128")
    assert {r["group"] for r in collect(tmp_path / "s")} == {"dense", "dense/bf16-mixed"}


def test_jobs_that_differ_in_a_key_no_label_names_are_split_not_mixed(tmp_path):
    """The safety net under the labels (report_lines.split_unlabelled): two seed-1 jobs whose
    configs differ in label smoothing are two lines; jobs that differ only in the seed, where they
    ran, their threads, or another criterion's settings stay one line."""

    def job(name, seed=1, **cfg):
        _job(tmp_path / "s", name, pct=70, epochs=0, seed=seed)
        f = tmp_path / "s" / name / "results.json"
        res = json.loads(f.read_text())
        for key, value in cfg.items():
            node = res["config"]
            *parents, leaf = key.split("__")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        f.write_text(json.dumps(res))

    job("a", loss__label_smoothing=0.1, threads=1, paths__output_dir="/x", prune__obd__sentences=10)
    job("b", seed=2, loss__label_smoothing=0.1, threads=2, paths__output_dir="/y", prune__obd__sentences=99)
    job("c", loss__label_smoothing=0.0, threads=1, paths__output_dir="/z", prune__obd__sentences=10)
    groups = {r["job"]: r["group"] for r in collect(tmp_path / "s")}
    assert groups == {
        "a": "magnitude/blind/no retraining/loss.label_smoothing=0.1",
        "b": "magnitude/blind/no retraining/loss.label_smoothing=0.1",
        "c": "magnitude/blind/no retraining/loss.label_smoothing=0.0",
    }
    shutil.rmtree(tmp_path / "s" / "c")  # the same recipe: one line, labelled as always
    assert {r["group"] for r in collect(tmp_path / "s")} == {"magnitude/blind/no retraining"}
