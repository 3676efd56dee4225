"""The cluster path for real: Hydra sweeps submitted to a single-node SLURM on this machine
(tests/slurm/local_slurm.sh) through `hydra/launcher=slurm` (submitit).

Skipped when SLURM is not available: no running controller (SLURM_CONF) and no slurmctld/munged
to start one as root. `.ci/run` installs the packages, so CI runs these.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nmt_prune.report import make_report
from tests.conftest import ROOT

#: one worker runs every test here (``--dist loadgroup``, as ``make test-all``): each module start
#: brings up its own cluster on fixed ports, so two workers' clusters would collide
pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.xdist_group("slurm")]
SCRIPT = ROOT / "tests" / "slurm" / "local_slurm.sh"
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=local",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=10",
]
TINY = ["debug=fast", "threads=1", "eval.val_bleu=false"]


def _sinfo_ok(env: dict[str, str]) -> bool:
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%a"], env=env, capture_output=True, text=True, timeout=10)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0 and "up" in p.stdout


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """The environment for SLURM clients: an existing cluster (SLURM_CONF) or a local one."""
    env = dict(os.environ)
    if env.get("SLURM_CONF") and _sinfo_ok(env):
        yield env
        return
    if not (shutil.which("slurmctld") and shutil.which("munged") and os.geteuid() == 0):
        pytest.skip("SLURM not available: no cluster (SLURM_CONF) and no slurmctld/munged to start as root")
    d = tmp_path_factory.mktemp("slurm")
    # one local cluster at a time on this machine (fixed ports, one munged): a worker that gets
    # here while another holds it waits (only without ``--dist loadgroup``) instead of colliding
    with open(tmp_path_factory.getbasetemp().parent / "local_slurm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = subprocess.run(["bash", str(SCRIPT), "start", str(d)], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        env["SLURM_CONF"] = str(d / "slurm.conf")
        # no accounting database on the local cluster: submitit's job-state query goes to a stand-in
        env["PATH"] = f"{SCRIPT.parent / 'bin'}{os.pathsep}{env['PATH']}"
        try:
            yield env
        finally:
            subprocess.run(["bash", str(SCRIPT), "stop", str(d)], capture_output=True)


def _results(sweep: Path) -> dict[float, dict]:
    """pct -> results.json of each job of the sweep."""
    out = {}
    for f in sweep.glob("*/results.json"):
        res = json.loads(f.read_text())
        out[float(res["config"]["prune"]["pct"])] = res
    return out


def test_sweep_runs_under_slurm_shares_one_baseline_and_records_a_failure(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    p = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            *LAUNCHER,
            *TINY,
            "prune.pct=50,90,100",
            f"hydra.sweep.dir={sweep}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
        cwd=ROOT,
        env=slurm,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode != 0  # one job failed: the multirun says so
    res = _results(sweep)
    ok = {k: r for k, r in res.items() if r["status"] == "ok"}
    assert set(ok) == {50, 90}
    failed = res[100]
    assert failed["status"] == "failed" and "prune.pct=100" in failed["error"]
    ids = {r["slurm"]["job_id"] for r in res.values()}
    assert len(ids) == 3 and all(r["slurm"]["array_job_id"] for r in res.values())  # each its own SLURM job
    assert sum(r["dense"]["trained_here"] for r in ok.values()) == 1  # the cache lock across SLURM jobs
    assert len({r["dense"]["cache_key"] for r in ok.values()}) == 1
    info = make_report(sweep, use_wandb=False)
    assert info["rows"] == 3 and info["failed"] == 1 and "bleu_vs_sparsity.png" in info["figures"]


def test_sigterm_preemption_is_interrupted_and_a_resubmitted_sweep_resumes(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    args = [sys.executable, "run.py", "-m", *LAUNCHER, *TINY, "prune.pct=50", "prune.retrain.epochs=300"]
    args += [
        "trainer.limit_train_batches=3",
        f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    first = subprocess.Popen(args, cwd=ROOT, env=slurm, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(sweep.glob("*/checkpoints/last.ckpt")) and time.time() < deadline:
        assert first.poll() is None, "the sweep ended before the job's first retraining checkpoint"
        time.sleep(0.2)
    (job,) = [d for d in sweep.iterdir() if d.is_dir() and not d.name.startswith(".")]
    time.sleep(1.0)
    slurm_id = json.loads((job / "results.json").read_text())["slurm"]["job_id"]
    subprocess.run(["scancel", "--signal=TERM", slurm_id], env=slurm, check=True)  # what preemption sends
    assert first.wait(timeout=300) != 0
    res = json.loads((job / "results.json").read_text())
    assert res["status"] == "interrupted" and "SIGTERM" in res["error"] and "exit 143" in res["error"]

    again = subprocess.run(args, cwd=ROOT, env=slurm, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    res = json.loads((job / "results.json").read_text())
    assert res["status"] == "ok" and res["resumed_from"] == str(job / "checkpoints" / "last.ckpt")
    assert res["slurm"]["job_id"] != slurm_id
    assert [h["epoch"] for h in res["history"]] == list(range(300))  # no epoch lost or run twice
