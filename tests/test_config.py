"""The real config tree composes, its options are the documented ones, presets shrink runs."""

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException

from tests.conftest import ROOT, make_cfg


def test_default_config_composes(tmp_path):
    cfg = make_cfg(tmp_path)
    assert cfg.data.name == "toy" and cfg.logger.name == "none" and cfg.optim._partial_
    assert cfg.eval.beam_size == 5 and cfg.trainer.gradient_clip_val == 5.0


@pytest.mark.parametrize("group", ["data", "model", "init", "optim", "lr_schedule", "logger"])
def test_every_option_composes(tmp_path, group):
    for option in sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml")):
        cfg = make_cfg(tmp_path, f"{group}={option}")
        assert cfg[group] is not None


def test_multi30k_defaults(tmp_path):
    cfg = make_cfg(tmp_path, "data=multi30k")
    assert (cfg.data.src_lang, cfg.data.tgt_lang, cfg.data.min_freq) == ("en", "de", 2)
    assert cfg.data.splits.test == "test_2016_flickr" and not cfg.data.lowercase


def test_debug_fast_preset(tmp_path):
    cfg = make_cfg(tmp_path, "debug=fast")
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 5


def test_unknown_option_lists_choices(tmp_path):
    with pytest.raises(ConfigCompositionException, match="small"):
        make_cfg(tmp_path, "model=huge")


def test_the_config_checks_import_neither_torch_nor_lightning():
    """run.py runs them before the training stack is imported: a wrong value fails in a second."""
    code = (
        "import sys; import run; from nmt_prune import plan; "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_the_schema_and_the_defaults_agree(tmp_path):
    """nmt_prune/schema.py types every prune key, conf/prune/default.yaml gives every value: the
    composed defaults leave none MISSING, and the criterion registry's defaults (a Pruner built
    without a config) are the file's."""
    from omegaconf import OmegaConf

    from nmt_prune import criteria

    cfg = make_cfg(tmp_path)
    assert OmegaConf.missing_keys(cfg.prune) == set()
    for c in criteria.REGISTRY.values():
        if c.settings:
            assert OmegaConf.to_container(cfg.prune[c.settings], enum_to_str=True) == c.defaults, c.name


def test_plan_job_holds_plain_checked_values(tmp_path):
    import dataclasses

    from nmt_prune.plan import plan_job

    cfg = make_cfg(
        tmp_path, "prune.pct=80", "prune.scheme=uniform", "prune.method=obd", "prune.only=softmax", "seed=7"
    )
    plan = plan_job(cfg)
    assert (plan.timing, plan.method, plan.scheme, plan.amount) == ("after_fit", "obd", "uniform", 0.8)
    assert all(type(v) is str for v in (plan.timing, plan.method, plan.scheme, plan.schedule, plan.rewind))
    assert type(plan.settings["estimator"]) is str and plan.settings["sentences"] == 1000
    assert "softmax" not in plan.exclude and "attention" in plan.exclude  # prune.only: all but one
    assert plan.seed == 7 and plan.criterion.name == "obd" and plan.retrain.until == "epochs"
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.amount = 0.5
    assert plan_job(make_cfg(tmp_path)).timing is None  # pct=0: a dense job
