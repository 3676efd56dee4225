"""Resumable studies: a multirun re-run into its sweep directory skips finished jobs, resumes
killed ones from their last checkpoint and runs the rest (nmt_prune/resume.py)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from callbacks.rng_state import RngState
from nmt_prune import resume, study
from nmt_prune.experiment import run
from tests.conftest import BASE, ROOT, make_cfg

CONFIG = {"seed": 1, "threads": 1, "paths": {"output_dir": "x"}, "trainer": {"max_epochs": 2}}


def _write(out: Path, status: str, config: dict, ckpt: bytes | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"status": status, "config": config}))
    if ckpt is not None:
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / "checkpoints" / "last.ckpt").write_bytes(ckpt)


def _ckpt_bytes(tmp_path: Path) -> bytes:
    torch.save({"epoch": 1}, tmp_path / "c.pt")
    return (tmp_path / "c.pt").read_bytes()


def test_decide(tmp_path):
    good = _ckpt_bytes(tmp_path)
    assert resume.decide(tmp_path / "new", CONFIG) == ("run", None, None)
    _write(tmp_path / "ok", "ok", CONFIG)
    action, prev, _ = resume.decide(tmp_path / "ok", {**CONFIG, "threads": 2, "paths": {"output_dir": "y"}})
    assert action == "skip" and prev["status"] == "ok"  # where and how fast a job runs does not matter
    _write(tmp_path / "other", "ok", CONFIG, good)
    (tmp_path / "other" / "theta0.pt").write_bytes(good)
    assert resume.decide(tmp_path / "other", {**CONFIG, "seed": 2})[0] == "run"
    # the earlier attempt of another config moves aside, none of it lost, none of it reused
    for name in ("checkpoints", "theta0.pt", "results.json"):
        assert not (tmp_path / "other" / name).exists()
    (moved,) = (tmp_path / "other").glob("superseded-*")
    assert (moved / "checkpoints" / "last.ckpt").read_bytes() == good
    assert json.loads((moved / "results.superseded.json").read_text())["config"] == CONFIG
    assert (moved / "theta0.pt").is_file()
    _write(tmp_path / "killed", "running", CONFIG, good)
    assert resume.decide(tmp_path / "killed", CONFIG) == (
        "resume",
        None,
        str(tmp_path / "killed/checkpoints/last.ckpt"),
    )
    _write(tmp_path / "cut", "interrupted", CONFIG, b"half a file")
    assert resume.decide(tmp_path / "cut", CONFIG)[0] == "run"
    # an option added to conf/ after the job ran (default: the behaviour before it) does not make
    # it run again, unless the job's overrides set it
    before = {**CONFIG, "prune": {"pct": 80}}
    _write(tmp_path / "before", "ok", before)
    added = {**CONFIG, "prune": {"pct": 80, "taylor": {"fraction": 8}}}
    assert resume.decide(tmp_path / "before", added)[0] == "skip"
    assert resume.decide(tmp_path / "before", added, ["prune.taylor.fraction=8"])[0] == "run"
    assert resume.decide(tmp_path / "before", {**CONFIG, "prune": {"pct": 90}})[0] == "run"
    _write(tmp_path / "failed", "failed", CONFIG, good)
    assert resume.decide(tmp_path / "failed", CONFIG)[0] == "run"


def test_a_job_run_under_a_renamed_key_is_the_same_job(tmp_path):
    """prune.snip.fraction=1 (an integer: batches, before 2026-11-22) is prune.snip.batches=1: a
    finished job of that spelling is skipped, and an extension still finds its checkpoint."""
    old = {**CONFIG, "prune": {"pct": 90, "snip": {"fraction": 1}}}
    new = {**CONFIG, "prune": {"pct": 90, "snip": {"batches": 1, "fraction": None}}}
    _write(tmp_path / "ok", "ok", old)
    assert resume.decide(tmp_path / "ok", new)[0] == "skip"
    four = {**CONFIG, "prune": {"pct": 90, "snip": {"batches": 4, "fraction": None}}}
    assert resume.decide(tmp_path / "ok", four)[0] == "run"  # 1 batch is not 4
    diff = resume.differences(resume.comparable(old), resume.comparable(four))
    assert diff == ["prune.snip.batches: 1 -> 4"]
    spelled = {**ONE_SHOT, "prune": {**ONE_SHOT["prune"], "snip": {"fraction": 1}}}
    _capped(tmp_path / "cap", "ok", "max_epochs", _ckpt_bytes(tmp_path), spelled)
    respelled = {**ONE_SHOT, "prune": {**ONE_SHOT["prune"], "snip": {"batches": 1, "fraction": None}}}
    assert resume.decide(tmp_path / "cap", _cap(4, respelled), timing="after_fit")[0] == "extend"


def test_saved_results_restore_into_a_fresh_study_dir_and_are_skipped(tmp_path):
    """docs/study/runs survives a new working tree: restored jobs are skipped, the others run."""
    runs, fresh = tmp_path / "runs", tmp_path / "fresh"
    _write(tmp_path / "study" / "p" / "a", "ok", CONFIG, _ckpt_bytes(tmp_path))
    _write(tmp_path / "study" / "p" / "b", "failed", CONFIG)
    assert study.save(tmp_path / "study", runs) == 1 and study.save(tmp_path / "study", runs) == 0
    assert [p.parent.name for p in runs.rglob("results.json")] == ["a"]
    assert study.restore(runs, fresh) == 1 and study.restore(runs, fresh) == 0
    assert resume.decide(fresh / "p" / "a", {**CONFIG, "data": {"root": "/elsewhere"}})[0] == "skip"
    assert resume.decide(fresh / "p" / "b", CONFIG)[0] == "run"


SWEEP = [
    "-m",
    "seed=1,2,3",
    *BASE,
    "trainer.limit_train_batches=4",
    "eval.val_bleu=false",
    "eval.beam_size=1",
]


def _outputs(job: Path) -> dict[Path, int]:
    """What a job computed (Hydra rewrites .hydra/ and the log of every job it launches)."""
    return {
        p: p.stat().st_mtime_ns
        for p in job.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


@pytest.mark.integration
def test_killed_multirun_resumes_without_rerunning_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        sys.executable,
        "run.py",
        *SWEEP,
        f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    first = subprocess.Popen(
        [*args, "trainer.max_epochs=100"],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not list(sweep.glob("*seed=2*/checkpoints/last.ckpt")) and time.time() < deadline:
        assert first.poll() is None, "the multirun ended before job 2 checkpointed"
        time.sleep(0.1)
    time.sleep(1.0)  # a few epochs of job 2 in
    os.killpg(first.pid, signal.SIGKILL)  # no cleanup, no finally: as a session that ends
    first.wait()
    job = {s: next(sweep.glob(f"*seed={s}*"), None) for s in (1, 2, 3)}
    last = job[2] / "checkpoints" / "last.ckpt"
    assert json.loads((job[1] / "results.json").read_text())["status"] == "ok"
    assert json.loads((job[2] / "results.json").read_text())["status"] == "running"
    assert job[3] is None
    before = _outputs(job[1])

    second = subprocess.run([*args, "trainer.max_epochs=100"], cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert log.count("skipped:") == 1 and job[1].name in log.split("skipped:")[1].splitlines()[0]
    assert log.count("resuming the unfinished") == 1
    assert _outputs(job[1]) == before  # not run again
    job[3] = next(sweep.glob("*seed=3*"))
    res = {s: json.loads((job[s] / "results.json").read_text()) for s in (1, 2, 3)}
    assert all(r["status"] == "ok" for r in res.values())
    assert res[2]["resumed_from"] == str(last) and "resumed_from" not in res[3]
    # the resumed job kept the epochs it had run before the kill: one history, every epoch once
    assert [h["epoch"] for h in res[2]["history"]] == list(range(100))
    assert res[2]["training"]["epochs"] == 100


@pytest.mark.integration
def test_sigterm_exits_non_zero_as_interrupted_and_the_rerun_resumes(tmp_path):
    """What SLURM sends before it kills a preempted or timed-out job."""
    out = tmp_path / "run"
    base = [a if a != "logger=none" else "logger=csv" for a in SWEEP[2:]]
    args = [sys.executable, "run.py", *base, f"hydra.run.dir={out}", "trainer.max_epochs=150"]
    args.append(f"paths.cache_dir={tmp_path / 'cache'}")
    job = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "last.ckpt").is_file() and time.time() < deadline:
        assert job.poll() is None, "the job ended before its first checkpoint"
        time.sleep(0.1)
    time.sleep(0.5)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=120) == 143
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "interrupted" and "SIGTERM" in res["error"]
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)  # the same job, run again
    assert again.returncode == 0, again.stderr[-3000:]
    # no false alarm that the earlier log files will be deleted: their rows are kept (below)
    assert "will be deleted" not in again.stderr and "metrics.earlier.csv" in again.stdout + again.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "ok" and res["resumed_from"] == str(out / "checkpoints" / "last.ckpt")
    assert [h["epoch"] for h in res["history"]] == list(range(150))
    # the time and the log of the attempt before the SIGTERM are kept, not only the resumed part
    assert res["timings"]["train_s"] >= sum(h["train_s"] + h["val_s"] for h in res["history"])
    with (out / "csv" / "metrics.csv").open() as f:
        epochs = sorted(int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("val/ppl"))
    assert epochs[:150] == list(range(150)) and not (out / "csv" / "metrics.earlier.csv").exists()


ONE_SHOT = {**CONFIG, "prune": {"schedule": "one_shot", "rewind": "none", "retrain": {"epochs": 2}}}


def _capped(out: Path, status: str, stop: str | None, ckpt: bytes, config=ONE_SHOT) -> None:
    _write(out, status, config, ckpt)
    res = json.loads((out / "results.json").read_text())
    res["training"] = {"epochs": 2, "stop_reason": stop}
    (out / "results.json").write_text(json.dumps(res))


def _cap(n: int, config=ONE_SHOT) -> dict:
    return {**config, "prune": {**config["prune"], "retrain": {"epochs": n}}}


def test_decide_a_larger_retraining_cap(tmp_path):
    """A fit that stopped at its cap goes on to a larger one; one its rule stopped stands."""
    good = _ckpt_bytes(tmp_path)
    _capped(tmp_path / "cap", "ok", "max_epochs", good)
    action, prev, last = resume.decide(tmp_path / "cap", _cap(4), timing="after_fit")
    assert (action, last) == ("extend", str(tmp_path / "cap/checkpoints/last.ckpt"))
    assert prev["training"]["stop_reason"] == "max_epochs"
    assert resume.decide(tmp_path / "cap", ONE_SHOT, timing="after_fit")[0] == "skip"  # the same cap
    _capped(tmp_path / "rule", "ok", "converged", good)
    assert resume.decide(tmp_path / "rule", _cap(4), timing="after_fit")[0] == "skip"
    _capped(tmp_path / "killed", "running", None, good)
    assert resume.decide(tmp_path / "killed", _cap(4), timing="after_fit")[0] == "extend"
    # not a prefix of the new fit: a smaller cap, another key too, another timing or schedule
    for i, (config, timing) in enumerate(
        [
            (_cap(1), "after_fit"),
            ({**_cap(4), "seed": 2}, "after_fit"),
            (_cap(4), "at_init"),
            (_cap(4), None),
        ]
    ):
        _capped(tmp_path / f"no{i}", "ok", "max_epochs", good)
        assert resume.decide(tmp_path / f"no{i}", config, timing=timing)[0] == "run", i
    gradual = {**ONE_SHOT, "prune": {**ONE_SHOT["prune"], "schedule": "gradual"}}
    _capped(tmp_path / "gradual", "ok", "max_epochs", good, gradual)
    assert resume.decide(tmp_path / "gradual", _cap(4, gradual), timing="after_fit")[0] == "run"
    _capped(tmp_path / "cut", "ok", "max_epochs", b"half a file")
    assert resume.decide(tmp_path / "cut", _cap(4), timing="after_fit")[0] == "run"


def test_decide_a_larger_dense_training_cap(tmp_path):
    """A dense job (timing None) that stopped at ``trainer.max_epochs`` goes on to a larger one,
    whatever its LR schedule (``halving`` is a function of the epoch alone)."""
    good = _ckpt_bytes(tmp_path)

    def dense(n: int, schedule: str = "converge") -> dict:
        return {**CONFIG, "trainer": {"max_epochs": n}, "lr_schedule": {"name": schedule}}

    _capped(tmp_path / "cap", "ok", "max_epochs", good, dense(2))
    assert resume.decide(tmp_path / "cap", dense(4), timing=None)[0] == "extend"
    assert resume.decide(tmp_path / "cap", dense(2), timing=None)[0] == "skip"
    _capped(tmp_path / "rule", "ok", "converged", good, dense(2))
    assert resume.decide(tmp_path / "rule", dense(4), timing=None)[0] == "skip"
    _capped(tmp_path / "halving", "ok", "max_epochs", good, dense(2, "halving"))
    assert resume.decide(tmp_path / "halving", dense(4, "halving"), timing=None)[0] == "extend"
    _capped(tmp_path / "pruned", "ok", "max_epochs", good, dense(2))  # a pruning job: its own cap
    assert resume.decide(tmp_path / "pruned", dense(4), timing="after_fit")[0] == "run"


def _capped_then_longer(tmp_path: Path, cap: str, *job: str) -> tuple[dict, dict, dict]:
    """A job run with ``cap``=2 (stopping there), the same job with ``cap``=4 in its directory and
    a fresh one with ``cap``=4: (first, longer, fresh) results. Dropout on: the random generators'
    states must travel in the checkpoint."""
    fit = [
        "model.dropout=0.3",
        "trainer.limit_train_batches=4",
        "eval.beam_size=2",
        "lr_schedule=converge",
        "lr_schedule.patience=3",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *job,
    ]
    first = run(make_cfg(tmp_path / "a", *fit, f"{cap}=2"))
    assert first["training"]["stop_reason"] == "max_epochs" and len(first["history"]) == 2
    longer = run(make_cfg(tmp_path / "a", *fit, f"{cap}=4"))
    fresh = run(make_cfg(tmp_path / "b", *fit, f"{cap}=4"))
    return first, longer, fresh


def test_extended_retraining_equals_the_longer_run(tmp_path):
    """Raising ``prune.retrain.epochs`` of a finished, capped job continues its fit: the same
    epochs, weights and figures as a job run with the larger cap from the start. With dropout:
    the random generators' states travel in the checkpoint (callbacks/rng_state.py), so the
    continued fit draws the masks an uninterrupted one would (batches are shuffled from (seed,
    epoch) anyway)."""
    first, longer, fresh = _capped_then_longer(
        tmp_path,
        "prune.retrain.epochs",
        "trainer.max_epochs=2",
        "prune.pct=60",
        "prune.retrain.until=converged",
    )
    assert longer["extended"] == {
        "key": "prune.retrain.epochs",
        "from": 2,
        "to": 4,
        "status_before": "ok",
    }
    assert "extended" not in fresh and longer["training"]["max_epochs"] == 4
    assert [h["epoch"] for h in longer["history"]] == [0, 1, 2, 3]
    assert longer["history"][:2] == first["history"]  # carried over (timings too), not trained again
    for key in ("val_ppl", "test_ppl", "test_bleu", "sparsity"):
        assert longer[key] == pytest.approx(fresh[key], rel=1e-6), key
    for a, b in zip(longer["history"], fresh["history"]):
        assert a["val_ppl"] == pytest.approx(b["val_ppl"], rel=1e-6)
    assert longer["layer_error"] == first["layer_error"] and longer["layer_error"] is not None
    assert longer["pruned"] == pytest.approx(first["pruned"])
    assert longer["prune"]["n_pruned"] == fresh["prune"]["n_pruned"]


def test_extended_fixed_epoch_retraining_with_halving_equals_the_longer_run(tmp_path):
    """``prune.retrain.until=epochs`` retrains under the halving schedule: raising its cap must give
    the LR curve of a fit run with the larger cap from the start (it did not while the schedule's
    milestones were computed from trainer.max_epochs when the fit started)."""
    first, longer, fresh = _capped_then_longer(
        tmp_path,
        "prune.retrain.epochs",
        "trainer.max_epochs=2",
        "prune.pct=60",
        "prune.retrain.until=epochs",
        "prune.retrain.halve_every=1",
    )
    assert longer["extended"]["to"] == 4 and longer["history"][:2] == first["history"]
    for a, b in zip(longer["history"], fresh["history"], strict=True):
        assert a["val_ppl"] == pytest.approx(b["val_ppl"], rel=1e-6)


def test_extended_dense_training_equals_the_longer_run(tmp_path):
    """Raising ``trainer.max_epochs`` of a finished dense job that stopped at it continues its fit
    (study_size_dense's narrow models hit the 30-epoch cap): the same history and figures as a
    dense job run with the larger cap from the start."""
    first, longer, fresh = _capped_then_longer(tmp_path, "trainer.max_epochs", "prune.pct=0")
    assert longer["extended"] == {"key": "trainer.max_epochs", "from": 2, "to": 4, "status_before": "ok"}
    assert [h["epoch"] for h in longer["history"]] == [0, 1, 2, 3]
    assert longer["history"][:2] == first["history"]
    for key in ("val_ppl", "test_ppl", "test_bleu"):
        assert longer[key] == pytest.approx(fresh[key], rel=1e-6), key
    for a, b in zip(longer["history"], fresh["history"]):
        assert a["val_ppl"] == pytest.approx(b["val_ppl"], rel=1e-6)


def test_the_generators_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    """What RngState saves loads with weights_only=True and, put back, gives the same draws
    (dropout masks included) as the process that saved it would have made next."""
    torch.manual_seed(3)
    random.seed(3)
    torch.rand(5)
    torch.save({"callbacks": {"RngState": RngState().state_dict()}}, tmp_path / "c.ckpt")

    def draws():
        return torch.rand(4), random.random(), torch.nn.functional.dropout(torch.ones(16), 0.5)

    expected = draws()
    torch.manual_seed(99)
    random.seed(99)
    cb = RngState()
    cb.load_state_dict(torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"]["RngState"])
    got = draws()
    assert cb.restored and torch.equal(got[0], expected[0]) and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])
