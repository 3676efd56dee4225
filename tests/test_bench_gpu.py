"""bench/gpu.py is run where a GPU is lent, rarely and with little time: its code runs here on the
CPU (``--device cpu``) so that a device session does not find it broken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_the_gpu_benchmark_runs_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--steps", "2", "--warmup", "1"]
    cmd += ["--models", "small", "--jobs", "2", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    loops = {(r["precision"], r["loop"]) for r in res["train"]}
    assert loops == {(p, k) for p in ("fp32", "bf16") for k in ("plain", "trainer", "trainer+masks")}
    assert all(r["tokens_per_s"] > 0 for r in res["train"])
    assert [r["processes"] for r in res["concurrent"]] == [1, 2] and res["concurrent"][1]["ratio_to_one"] > 0


@pytest.mark.integration
def test_the_compiled_step_benchmark_compares_like_with_like_on_the_cpu(tmp_path):
    """bench/compile_step.py's code path (Dynamo tracing of the decoder step; backend ``eager``
    so no C++ compiler is needed here): the compiled step must give the eager loss, and its
    gradients within float tolerance, before anything is timed."""
    out = tmp_path / "compile.json"
    cmd = [sys.executable, str(ROOT / "bench" / "compile_step.py"), "--device", "cpu", "--steps", "2"]
    cmd += ["--warmup", "1", "--backend", "eager", "--modes", "default", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["backend"] == "eager" and res["train"]["eager"] > 0
    assert "error" not in res["train"]["default"], res["train"]["default"]
    assert res["train"]["default"]["tokens_per_s"] > 0 and res["train"]["default"]["max_grad_diff"] < 1e-5
