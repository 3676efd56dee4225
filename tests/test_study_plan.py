"""``python -m nmt_prune.study plan``: what a re-run of a study would do with each job, changing
nothing, and ``--strict`` refusing to redo finished work (nmt_prune/study.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from nmt_prune import study
from tests.conftest import ROOT

JOB = "+sweep=study_rpp,prune.pct=80"


def _record(**changes) -> dict:
    """The config a job of study_rpp at 80% records in its results.json (composed here, with
    Hydra, independently of study.plan), with ``changes`` ({dotted key: value}) applied."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+sweep=study_rpp", "prune.pct=80"])
    with open_dict(cfg):
        del cfg["paths"]
        for k, v in changes.items():
            OmegaConf.update(cfg, k, v, force_add=True)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _write(study_dir: Path, config: dict) -> Path:
    out = study_dir / "study_rpp" / JOB
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"status": "ok", "config": config}))
    return out


def test_the_plan_sees_a_finished_job_and_strict_refuses_to_redo_it(tmp_path, capsys):
    assert study.preset_grid("study_rpp") == [["prune.pct=80"], ["prune.pct=90"]]
    assert study.preset_grid("study_rpp", ["prune.pct=90"]) == [["prune.pct=90"]]  # as Hydra sweeps
    # values as the sweeper writes them, which name the job directories (1e-4 -> 0.0001)
    assert ["prune.rpp.lam=0.0001", "prune.pct=80"] in study.preset_grid("study_l1_lambda")
    assert ["prune.rpp.lam=1e-06", "prune.pct=90"] in study.preset_grid("study_l1_lambda")
    out = _write(tmp_path, _record())
    assert dict((n, a) for n, a, _ in study.plan(tmp_path, "study_rpp")) == {
        JOB: "skip",
        "+sweep=study_rpp,prune.pct=90": "run",
    }
    # the old spelling of a renamed key is the same job
    old = _record()
    old["prune"]["snip"] = {"fraction": 1}
    _write(tmp_path, old)
    assert study.plan(tmp_path, "study_rpp")[0][1] == "skip"
    # another config: the plan says which key, --strict exits 1, and nothing was moved
    _write(tmp_path, _record(**{"optim.lr": 0.5}))
    (name, action, why), _ = study.plan(tmp_path, "study_rpp")
    assert action == "rerun finished" and "optim.lr: 0.5 -> 0.003" in why
    assert study._plan_main(tmp_path, ["study_rpp"], [], strict=True) == 1
    assert "1 finished job(s) would run again" in capsys.readouterr().err
    assert study._plan_main(tmp_path, ["study_rpp"], [], strict=False) == 0
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_a_mistyped_preset_or_override_is_one_line(tmp_path, capsys):
    """``make study STUDY_PRESETS=study_snp``: the name and the valid presets, exit 2, before any
    config is composed; a bad ARGS value: the check's own message (no Hydra traceback)."""
    for argv, message in (
        (["plan", str(tmp_path), "study_snp", "study_snip"], "no preset study_snp in conf/sweep/; valid: "),
        (["plan", str(tmp_path), "study_snp"], ", study_snip, study_snip_data, study_snip_init"),
        (["plan", str(tmp_path), "study_snip", "--", "prune.pct=abc"], "prune.pct='abc'"),
    ):
        with pytest.raises(SystemExit) as e:
            study.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
