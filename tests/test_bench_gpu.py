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
