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
