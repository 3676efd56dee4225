"""The dense-baseline cache: keyed by exactly the training config, one training under a lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from nmt_prune import baseline, cache_lock, code_fingerprint
from tests.conftest import make_cfg


def _fake_train(counter: Path, fail: bool = False, delay: float = 0.5):
    def train(out: Path, resume: str | None = None) -> dict:
        with counter.open("a") as f:
            f.write(f"trained from {resume}\n")
        time.sleep(delay)  # a window in which other jobs ask for the same baseline
        if fail:
            raise RuntimeError("killed mid-training")
        (out / "checkpoints").mkdir(exist_ok=True)
        torch.save({"w": torch.ones(2)}, out / "checkpoints" / "best.ckpt")  # files torch can read
        torch.save({"w": torch.zeros(2)}, out / "theta0.pt")
        return {"status": "ok", "checkpoint": str(out / "checkpoints" / "best.ckpt"), "test_bleu": 42.0}

    return train


def _job(tmp: str, q) -> None:
    cfg = make_cfg(Path(tmp))
    q.put(baseline.obtain(cfg, _fake_train(Path(tmp) / "count.txt"))["trained_here"])


@pytest.mark.integration  # an end-to-end run or subprocess: make test leaves it to CI
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
    assert torch.load(entry / "best.ckpt")["w"].sum() == 2 and (entry / "theta0.pt").is_file()


def test_failed_training_leaves_nothing_to_pick_up(tmp_path):
    cfg = make_cfg(tmp_path)
    killed = tmp_path / "cache" / "dense" / f".{baseline.cache_key(cfg)}.tmp-99999999"
    killed.mkdir(parents=True)  # what a job killed mid-training (no cleanup ran) leaves
    with pytest.raises(RuntimeError, match="killed"):
        baseline.obtain(cfg, _fake_train(tmp_path / "count.txt", fail=True, delay=0))
    assert not [d for d in (tmp_path / "cache" / "dense").iterdir() if d.is_dir()]
    res = baseline.obtain(cfg, _fake_train(tmp_path / "count.txt", delay=0))
    assert res["trained_here"] and res["test_bleu"] == 42.0
    assert res["machine"]["cpu"] and res["machine"]["cpu_capability"]  # where the entry was trained
    assert (tmp_path / "count.txt").read_text().count("trained") == 2


def test_an_entry_that_cannot_be_read_is_set_aside_and_trained_again(tmp_path, caplog):
    """A cut-short best.ckpt (a disk fault, a copy killed) failed every job that needed the entry
    with a traceback; now the entry moves to .<key>.broken-<time> (kept) and is trained again."""
    cfg, count = make_cfg(tmp_path), tmp_path / "count.txt"
    first = baseline.obtain(cfg, _fake_train(count, delay=0))
    best = Path(first["checkpoint"])
    best.write_bytes(best.read_bytes()[:20])
    again = baseline.obtain(cfg, _fake_train(count, delay=0))
    assert again["trained_here"] and count.read_text().count("trained") == 2
    (aside,) = (tmp_path / "cache" / "dense").glob(f".{first['cache_key']}.broken-*")
    assert (aside / "results.json").is_file() and "cannot be read (best.ckpt: " in caplog.text
    Path(again["theta0"]).unlink()  # an entry copied without theta0.pt (a GPU session's) is whole
    assert not baseline.obtain(cfg, _fake_train(count, delay=0))["trained_here"]
    assert count.read_text().count("trained") == 2


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
    for same in (
        "prune.pct=80",
        "prune.scheme=uniform",
        "logger=csv",
        "threads=2",
        "eval.beam_size=3",
        "prune.retrain.epochs=5",
        "trainer.enable_progress_bar=false",
    ):
        assert baseline.cache_key(make_cfg(tmp_path, same)) == key, same
    for other in (
        "seed=2",
        "model.hidden_size=24",
        "init=xavier_uniform",
        "optim.lr=0.01",
        "trainer.max_epochs=3",
        "data.toy_sizes.train=301",
        "loss.label_smoothing=0.0",
        "lr_schedule=none",
    ):
        assert baseline.cache_key(make_cfg(tmp_path, other)) != key, other


def test_a_waiting_job_says_so_and_gives_up_with_a_clear_error(tmp_path, caplog):
    import logging
    import subprocess
    import sys

    path = tmp_path / "k.lock"
    hold = (
        "from filelock import FileLock; import sys; l = FileLock(sys.argv[1]); l.acquire(); "
        "print('held', flush=True); sys.stdin.readline()"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", hold, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert other.stdout.readline().strip() == "held"  # another job is training the entry
    caplog.set_level(logging.INFO, logger="nmt_prune.baseline")
    with pytest.raises(TimeoutError, match=r"dense baseline k .*delete the lock file"):
        with cache_lock.waiting_lock(path, "k", timeout_h=0.3 / 3600, report_s=0.1):
            pass
    assert "another job is training it; waiting" in caplog.text and "still waiting" in caplog.text
    other.stdin.write("done\n")  # the other job finishes
    other.stdin.flush()
    with cache_lock.waiting_lock(path, "k", timeout_h=1, report_s=0.1):
        assert other.wait(timeout=60) == 0


# ----------------------------------------------------------------------- content and code in the key
_TINY = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "eval.beam_size=1",
    "eval.val_bleu=false",
    "prune.retrain.epochs=0",
    "prune.pct=50",
)


def test_code_version_ignores_docs_and_formatting_but_not_code(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('def f(x):\n    """Doc."""\n    return x + 1\n')
    b.write_text(
        '# a comment\ndef f(x):\n    """Other doc, longer."""\n\n    return (x\n            + 1)  # why\n'
    )
    c.write_text('def f(x):\n    """Doc."""\n    return x + 2\n')
    digest = code_fingerprint._code_digest
    assert digest(a) == digest(b) != digest(c)
    root = Path(baseline.__file__).resolve().parent.parent
    assert all((root / f).is_file() for f in code_fingerprint.CODE_FILES)  # the list names files that exist


def test_every_module_the_dense_training_imports_is_keyed_or_declared_harmless():
    """A module added to the training path (as nmt_prune/init.py once was) must enter the cache
    key (CODE_FILES) or be declared not to change what training learns (NOT_LEARNING)."""
    import ast

    root = Path(baseline.__file__).resolve().parent.parent
    seen: set[str] = set()
    PACKAGES = ("nmt_prune", "callbacks")

    def follow(f: str) -> None:
        if f in seen:
            return
        seen.add(f)
        for node in ast.walk(ast.parse((root / f).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                path = node.module.replace(".", "/")
                for cand in (f"{path}.py", f"{path}/__init__.py"):
                    if (root / cand).is_file():
                        follow(cand)
                        break

    follow("nmt_prune/training.py")
    seen = {f for f in seen if not f.endswith("__init__.py")}
    keyed, harmless = set(code_fingerprint.CODE_FILES), set(code_fingerprint.NOT_LEARNING)
    assert seen <= keyed | harmless, seen - keyed - harmless


def test_an_edited_corpus_gets_a_new_entry_not_the_stale_model(tmp_path):
    from nmt_prune.experiment import run

    corpus = tmp_path / "corpus"
    first = run(make_cfg(tmp_path, *_TINY, f"data.root={corpus}"))
    assert first["status"] == "ok" and first["dense"]["trained_here"]
    lines = (corpus / "train.tgt").read_text().splitlines()
    lines[0] = lines[0] + " x"  # one word of one training sentence, in place
    (corpus / "train.tgt").write_text("\n".join(lines) + "\n")
    again = run(make_cfg(tmp_path, *_TINY, f"data.root={corpus}", "paths.output_dir=" + str(tmp_path / "o2")))
    assert again["status"] == "ok" and again["dense"]["trained_here"]  # not adopted: the data differ
    assert again["dense"]["cache_key"] != first["dense"]["cache_key"]
    moved = tmp_path / "moved"
    corpus.rename(moved)  # the same files elsewhere: the same entry
    third = run(make_cfg(tmp_path, *_TINY, f"data.root={moved}", "paths.output_dir=" + str(tmp_path / "o3")))
    assert third["dense"]["cache_key"] == again["dense"]["cache_key"] and not third["dense"]["trained_here"]


def test_other_code_gets_a_new_key_and_adopts_the_entry_only_if_it_reproduces(tmp_path, monkeypatch):
    from nmt_prune.experiment import run

    first = run(make_cfg(tmp_path, *_TINY))
    key1 = first["dense"]["cache_key"]
    monkeypatch.setattr(baseline, "code_version", lambda: "other-code")
    second = run(make_cfg(tmp_path, *_TINY, "paths.output_dir=" + str(tmp_path / "o2")))
    d = second["dense"]
    assert d["cache_key"] != key1 and not d["trained_here"]  # adopted, not trained
    assert d["adopted"]["from"] == key1
    assert d["adopted"]["val_ppl_measured"] == pytest.approx(d["adopted"]["val_ppl_recorded"], rel=1e-6)
    assert second["test_ppl"] == pytest.approx(first["test_ppl"], rel=1e-6)  # the same dense model pruned

    for entry in (tmp_path / "cache" / "dense").glob("*/results.json"):
        rec = json.loads(entry.read_text())
        rec["val_ppl"] *= 1.01  # what the entries recorded is not what their model does now
        entry.unlink()  # (a hard link of the adopted entry's: replaced, not edited)
        entry.write_text(json.dumps(rec))
    monkeypatch.setattr(baseline, "code_version", lambda: "third-code")
    third = run(make_cfg(tmp_path, *_TINY, "paths.output_dir=" + str(tmp_path / "o3")))
    assert third["dense"]["trained_here"] and third["dense"].get("adopted") is None
