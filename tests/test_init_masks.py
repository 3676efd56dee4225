"""nmt_prune.init_masks computes the masks pruning at init trains from, as the job computes them."""

from __future__ import annotations

import pytest
import torch

from nmt_prune import init_masks
from nmt_prune.experiment import run
from nmt_prune.masks import masks_from_checkpoint
from tests.conftest import BASE, FAST, make_cfg


def _paths(tmp_path):
    return [f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'out'}"]


def test_the_masks_are_the_ones_a_trained_at_init_job_holds(tmp_path):
    job = ["prune.pct=80", "prune.method=snip"]
    res = run(make_cfg(tmp_path, *FAST, *job))
    trained = masks_from_checkpoint(res["checkpoint"]).masks
    (row,) = init_masks.masks_of([[*BASE, *_paths(tmp_path), *job]])
    assert row["keep"].keys() == trained.keys()
    for name, keep in trained.items():
        assert torch.equal(row["keep"][name], keep), name
    assert row["dead"] == res["dead"]  # the same dead-capacity record as the job's results.json


def test_sweep_syntax_expands_to_the_product_and_jaccard_is_the_set_ratio(tmp_path):
    jobs = init_masks.expand(["prune.timing=at_init", "prune.method=snip,random", "seed=1,2", *BASE])
    assert len(jobs) == 4 and jobs[3][:3] == ["prune.timing=at_init", "prune.method=random", "seed=2"]
    rows = init_masks.masks_of([[*j, *_paths(tmp_path), "prune.pct=90"] for j in jobs])
    s = init_masks.summary(rows)
    assert [j["job"] for j in s["jobs"]] == [
        "prune.method=snip seed=1",
        "prune.method=snip seed=2",
        "prune.method=random seed=1",
        "prune.method=random seed=2",
    ]
    for a, ra in enumerate(rows):  # independent reference: Python sets of (name, flat index)
        sa = {(n, i) for n, k in ra["keep"].items() for i in k.flatten().nonzero().flatten().tolist()}
        for b, rb in enumerate(rows):
            sb = {(n, i) for n, k in rb["keep"].items() for i in k.flatten().nonzero().flatten().tolist()}
            assert s["jaccard"][a][b] == pytest.approx(len(sa & sb) / len(sa | sb))
    assert s["jaccard_independent_random"][0][3] == pytest.approx(0.1 / 1.9)
    assert init_masks.independent_jaccard(0.5, 0.2) == pytest.approx(0.1 / 0.6)  # E|A&B| / E|A|B|
    assert all(j["sparsity"] == pytest.approx(0.9, abs=1e-3) for j in s["jobs"])
    assert "Jaccard" in init_masks.render(s)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prune.method=random", "prune.pct=50"], "prune.timing resolves to 'after_fit'"),
        (["prune.method=snip", "prune.pct=120"], "prune.pct=120"),
        (["prune.method=snip", "init=foo"], "Available options in 'init'"),
    ],
)
def test_a_bad_command_line_is_one_error_line_before_any_work(tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as e:
        init_masks.main([*BASE, *_paths(tmp_path), *overrides])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()  # no data was built
