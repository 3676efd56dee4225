"""Sweep presets, launchers, W&B sweep files: every grid composes, has no duplicate jobs, and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nmt_prune import criteria
from nmt_prune.experiment import validate_prune
from nmt_prune.report import make_report
from nmt_prune.study import preset_grid
from nmt_prune.wandb_sweeps import parse_value
from tests.conftest import ROOT, TINY, make_cfg

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "sweep").glob("*.yaml"))
#: jobs per preset (the product of its grid)
EXPECTED_JOBS = {
    "schemes": 27,
    "random_vs_magnitude": 12,
    "retrain_vs_scratch": 18,
    "obd": 6,
    "snip_random": 8,
    "snip_init": 30,
    "snip_fraction": 6,
    "extreme": 15,
    "class_sensitivity": 40,
    "schedules": 12,
    "study_control": 3,
    "study_oneshot": 12,
    "study_gradual": 4,
    "study_no_retrain": 63,
    "study_no_retrain_controls": 42,
    "study_methods": 6,
    "study_rewind": 4,
    "study_snip": 8,
    "study_snip_init": 4,
    "study_snip_data": 3,
    "study_recipe": 4,
    "study_sensitivity": 40,
    "study_schedules": 6,
    "study_sgd": 4,
    "study_sgd_no_retrain": 21,
    "study_headline": 4,
    "study_obs": 30,
    "study_obd_all": 14,
    "study_bf16": 1,
    "study_rpp_equal": 2,
    "study_l1_equal": 2,
    "study_rpp_lambda": 6,
    "study_l1_lambda": 6,
    "study_l1": 2,
    "study_rpp": 2,
    "study_size_dense": 4,
    "study_size_pruned": 4,
    "study_obs_retrain": 2,
}


_grid = preset_grid  # the jobs of a preset's multirun (nmt_prune/study.py)


def _meaning(cfg) -> str:
    """What a job computes: its config without the keys that mean nothing for it."""
    c = OmegaConf.to_container(cfg, resolve=False)
    p = c["prune"]
    timing = validate_prune(cfg)
    for crit in criteria.REGISTRY.values():  # the settings of the criteria the job does not use
        if crit.settings and crit.name != p["method"]:
            p.pop(crit.settings)
    if p["method"] != "random":
        p.pop("seed")
    if timing == "at_init" or p["rewind"] != "none":
        p.pop("retrain")
    if p["schedule"] != "iterative":
        p.pop("iterative")
    for k in ("gradual", "linear"):
        if p["schedule"] != k:
            p.pop(k)
    c.pop("paths")
    return json.dumps(c, sort_keys=True, default=str)


def test_every_preset_is_tested():
    assert set(PRESETS) == set(EXPECTED_JOBS)


@pytest.mark.integration  # composes every job of every preset (~400): make test leaves it to CI
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_expands_to_distinct_valid_jobs(tmp_path, preset):
    jobs = _grid(preset)
    assert len(jobs) == EXPECTED_JOBS[preset]
    meanings = set()
    for job in jobs:
        cfg = make_cfg(tmp_path, f"+sweep={preset}", *job)
        for o in job:  # every swept key is a real key (or config group) of the composed config
            key, value = o.split("=", 1)
            assert key in {"init"} or OmegaConf.select(cfg, key) == parse_value(value), (preset, o)
        meanings.add(_meaning(cfg))  # validates the job, as run.py would, before any work
    assert len(meanings) == len(jobs), f"{preset}: {len(jobs) - len(meanings)} duplicate jobs"


def test_seeds_multiply_any_preset(tmp_path):
    for seed in (1, 2, 3):
        assert make_cfg(tmp_path, "+sweep=schemes", f"seed={seed}").seed == seed


def test_slurm_launcher_config_composes():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=2"]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 2, 240)


def test_job_directories_are_named_after_their_overrides():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.override_dirname}"
    assert {"paths.cache_dir", "threads", "data.root"} <= set(
        cfg.hydra.job.config.override_dirname.exclude_keys
    )


# not `integration`: the check takes under a second, and make test must catch a preset added
# without its W&B sweep file (CI failed on exactly that on 2026-11-22)
def test_wandb_sweep_files_are_current_and_name_real_keys(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "nmt_prune.wandb_sweeps", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr
    for f in sorted((ROOT / "sweeps").glob("*.yaml")):
        d = yaml.safe_load(f.read_text())
        assert d["command"] == ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"], f.name
        assert d["program"] == "run.py" and d["parameters"]["+sweep"]["value"] == f.stem
        for key, spec in d["parameters"].items():
            for v in spec.get("values", [spec.get("value")]):
                cfg = make_cfg(tmp_path, f"{key}={v}")  # composes: the key exists, the value parses
                if not key.startswith("+") and key != "init":
                    assert OmegaConf.select(cfg, key) == v, (f.name, key, v)


@pytest.mark.integration  # an end-to-end run or subprocess: make test leaves it to CI
def test_joblib_sweep_shares_one_baseline_and_survives_a_failed_job(tmp_path):
    """Two parallel jobs and a job that fails: the others finish, the report lists the failure."""
    sweep = tmp_path / "multirun"
    p = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "prune.pct=50,80,100",
            *[o for o in TINY if o != "threads=1"],
            f"hydra.sweep.dir={sweep}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert p.returncode != 0  # the multirun reports the failed job ...
    results = {}
    for f in sweep.glob("*/results.json"):
        assert "prune.pct=" in f.parent.name and "paths.cache_dir" not in f.parent.name  # named by overrides
        res = json.loads(f.read_text())
        results[res["config"]["prune"]["pct"]] = res
    assert set(results) == {50, 80, 100}  # ... after running the others
    ok = [r for r in results.values() if r["status"] == "ok"]
    assert len(ok) == 2 and results[100]["status"] == "failed"
    assert "prune.pct=100" in results[100]["error"]
    assert sum(r["dense"]["trained_here"] for r in ok) == 1  # one dense training for the sweep
    assert len(list((tmp_path / "cache" / "dense").glob("*/best.ckpt"))) == 1
    assert all(
        r["threads"] == max(1, min(2, (os.cpu_count() or 1) // 2)) for r in ok
    )  # 2 jobs share the cores
    # the dense training borrowed the waiting job's threads when it re-counted them (whether it
    # was waiting by then is a race on a model this small: tests/test_lending.py pins the rule)
    lent = ok[0]["dense"]["training"]["threads"]
    assert lent[0] == ok[0]["threads"] and all(ok[0]["threads"] <= n <= (os.cpu_count() or 1) for n in lent)
    info = make_report(sweep, use_wandb=False)
    assert info["rows"] == 3 and info["failed"] == 1
    md = (sweep / "report" / "results.md").read_text()
    assert "## Failed jobs" in md and "prune.pct=100" in md.split("## Failed jobs")[1]


def test_wandb_run_is_named_by_overrides_and_grouped_by_sweep(tmp_path):
    from nmt_prune.loggers import make_logger

    cfg = make_cfg(tmp_path, "logger=wandb")
    job = {
        "multirun": True,
        "sweep_dir": "multirun/2026-11-21/10-00-00",
        "name": "prune.pct=80,prune.scheme=blind",
    }
    init = make_logger(cfg, tmp_path, job)._wandb_init  # the run is created lazily: nothing starts here
    assert (init["name"], init["group"]) == (job["name"], job["sweep_dir"])
    assert init["config"]["prune"]["pct"] == 0 and isinstance(init["config"], dict)
    init = make_logger(make_cfg(tmp_path, "logger=wandb", "logger.group=mine"), tmp_path, job)._wandb_init
    assert init["group"] == "mine"


def test_size_presets_prune_to_the_nonzero_counts_of_the_dense_widths():
    """study_size_pruned's percentages leave the 256 model with as many nonzero parameters
    (biases included) as each dense width of study_size_dense has, on Multi30k's vocabularies."""
    from nmt_prune.model import Seq2Seq

    vocab = (6224, 8024)  # Multi30k En/De with min_freq 2 (the data module's log line)

    def counts(h):
        m = Seq2Seq(*vocab, emb_size=h, hidden_size=h, layers=2)
        return sum(p.numel() for p in m.parameters()), sum(p.numel() for p in m.parameters() if p.dim() >= 2)

    total, prunable = counts(256)
    widths = [int(j[0].split("=")[1]) for j in _grid("study_size_dense")]
    pcts = [float(j[0].split("=")[1]) for j in _grid("study_size_pruned")]
    assert len(widths) == len(pcts)
    for h, pct in zip(widths, pcts):
        nonzero = total - round(pct / 100 * prunable)
        assert abs(nonzero - counts(h)[0]) <= 0.005 / 100 * prunable, h  # pct has two decimals
