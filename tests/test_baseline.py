"""The dense-baseline cache: keyed by exactly the training config, one training under a lock."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from nmt_prune import baseline
from tests.conftest import make_cfg


def _fake_train(counter: Path, fail: bool = False, delay: float = 0.5):
    def train(out: Path, resume: str | None = None) -> dict:
        with counter.open("a") as f:
            f.write(f"trained from {resume}\n")
        time.sleep(delay)  # a window in which other jobs ask for the same baseline
        if fail:
            raise RuntimeError("killed mid-training")
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / "checkpoints" / "best.ckpt").write_bytes(b"weights")
        (out / "theta0.pt").write_bytes(b"init")
        return {"status": "ok", "checkpoint": str(out / "checkpoints" / "best.ckpt"), "test_bleu": 42.0}

    return train


def _job(tmp: str, q) -> None:
    cfg = make_cfg(Path(tmp))
    q.put(baseline.obtain(cfg, _fake_train(Path(tmp) / "count.txt"))["trained_here"])


def test_parallel_jobs_train_once(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_job, args=(str(tmp_path), q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(q.get() for _ in procs) == [False, False, True]
    assert (tmp_path / "count.txt").read_text().count("trained") == 1
    (entry,) = [d for d in (tmp_path / "cache" / "dense").iterdir() if d.is_dir()]
    assert (entry / "best.ckpt").read_bytes() == b"weights" and (entry / "theta0.pt").is_file()


def test_failed_training_leaves_nothing_to_pick_up(tmp_path):
    cfg = make_cfg(tmp_path)
    killed = tmp_path / "cache" / "dense" / f".{baseline.cache_key(cfg)}.tmp-99999999"
    killed.mkdir(parents=True)  # what a job killed mid-training (no cleanup ran) leaves
    with pytest.raises(RuntimeError, match="killed"):
        baseline.obtain(cfg, _fake_train(tmp_path / "count.txt", fail=True, delay=0))
    assert not [d for d in (tmp_path / "cache" / "dense").iterdir() if d.is_dir()]
    res = baseline.obtain(cfg, _fake_train(tmp_path / "count.txt", delay=0))
    assert res["trained_here"] and res["test_bleu"] == 42.0
    assert (tmp_path / "count.txt").read_text().count("trained") == 2


def test_an_interrupted_training_is_resumed_by_the_next_job(tmp_path):
    """A killed dense training leaves its partial dir; the next job resumes from its last.ckpt (if it
    loads) instead of starting over, and a corrupt last.ckpt means starting over."""
    import torch

    cfg = make_cfg(tmp_path)
    partial = tmp_path / "cache" / "dense" / f".{baseline.cache_key(cfg)}.partial"
    (partial / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 3}, partial / "checkpoints" / "last.ckpt")
    res = baseline.obtain(cfg, _fake_train(tmp_path / "count.txt", delay=0))
    assert res["trained_here"] and not partial.exists()
    assert (tmp_path / "count.txt").read_text() == f"trained from {partial / 'checkpoints' / 'last.ckpt'}\n"

    cfg2 = make_cfg(tmp_path, "seed=7")
    partial2 = tmp_path / "cache" / "dense" / f".{baseline.cache_key(cfg2)}.partial"
    (partial2 / "checkpoints").mkdir(parents=True)
    (partial2 / "checkpoints" / "last.ckpt").write_bytes(b"cut short by a kill")
    baseline.obtain(cfg2, _fake_train(tmp_path / "count2.txt", delay=0))
    assert (tmp_path / "count2.txt").read_text() == "trained from None\n"


def test_key_covers_training_config_and_nothing_else(tmp_path):
    key = baseline.cache_key(make_cfg(tmp_path))
    for same in ("prune.pct=80", "prune.scheme=uniform", "logger=csv", "threads=2", "eval.beam_size=3",
                 "prune.retrain.epochs=5", "trainer.enable_progress_bar=false"):  # fmt: skip
        assert baseline.cache_key(make_cfg(tmp_path, same)) == key, same
    for other in ("seed=2", "model.hidden_size=24", "init=xavier_uniform", "optim.lr=0.01",
                  "trainer.max_epochs=3", "data.toy_sizes.train=301", "loss.label_smoothing=0.0",
                  "lr_schedule=none"):  # fmt: skip
        assert baseline.cache_key(make_cfg(tmp_path, other)) != key, other


def test_a_waiting_job_says_so_and_gives_up_with_a_clear_error(tmp_path, caplog):
    import logging
    import subprocess
    import sys

    path = tmp_path / "k.lock"
    hold = ("from filelock import FileLock; import sys; l = FileLock(sys.argv[1]); l.acquire(); "
            "print('held', flush=True); sys.stdin.readline()")  # fmt: skip
    other = subprocess.Popen([sys.executable, "-c", hold, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert other.stdout.readline().strip() == "held"  # another job is training the entry
    caplog.set_level(logging.INFO, logger="nmt_prune.baseline")
    with pytest.raises(TimeoutError, match=r"dense baseline k .*delete the lock file"):
        with baseline._waiting_lock(path, "k", timeout_h=0.3 / 3600, report_s=0.1):
            pass
    assert "another job is training it; waiting" in caplog.text and "still waiting" in caplog.text
    other.stdin.write("done\n")  # the other job finishes
    other.stdin.flush()
    with baseline._waiting_lock(path, "k", timeout_h=1, report_s=0.1):
        assert other.wait(timeout=60) == 0
