"""On a CUDA device (marker ``gpu``; skipped without one, so CI and CPU machines skip them):
scoring with cuDNN's LSTM, and pruned runs whose masks hold on the GPU. Run them where a GPU is:
``pytest -m gpu``.
"""

from __future__ import annotations

import pytest
import torch

from nmt_prune.data.datamodule import collate
from nmt_prune.experiment import run
from nmt_prune.init import init_weights
from nmt_prune.model import Seq2Seq
from nmt_prune.saliency import hessian_diagonal, snip
from tests.conftest import make_cfg
from tests.test_saliency import _examples

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

FAST = ["trainer.accelerator=gpu", "trainer.max_epochs=2", "trainer.limit_train_batches=6"]
FAST += ["eval.beam_size=2", "prune.retrain.epochs=1", "prune.pct=80"]


def test_snip_and_obd_score_with_cudnn_as_on_the_cpu():
    """cuDNN refuses an LSTM backward in eval mode; scoring runs in training mode with dropout 0."""
    torch.manual_seed(0)
    cpu = Seq2Seq(9, 8, emb_size=16, hidden_size=16, layers=2, dropout=0.3)
    init_weights(cpu, "uniform", 0.1)
    gpu = Seq2Seq(9, 8, emb_size=16, hidden_size=16, layers=2, dropout=0.3).cuda()
    gpu.load_state_dict(cpu.state_dict())
    names = [n for n, p in cpu.named_parameters() if p.dim() == 2]
    ex = _examples(6, seed=1)
    for model in (cpu, gpu):
        model.eval()
    a, b = snip(cpu, names, [collate(ex)]), snip(gpu, names, [collate(ex)])
    h_cpu = hessian_diagonal(cpu, names, [collate([e]) for e in ex], "fisher")
    h_gpu = hessian_diagonal(gpu, names, [collate([e]) for e in ex], "fisher")
    for n in names:
        torch.testing.assert_close(b[n].cpu(), a[n], rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(h_gpu[n].cpu(), h_cpu[n], rtol=1e-3, atol=1e-7)
    assert not gpu.training and gpu.encoder.dropout == 0.3  # restored after scoring


PRUNE = {
    "magnitude": ["prune.method=magnitude"],
    "snip": ["prune.method=snip"],
    "obd": ["prune.method=obd"],
    "gradual": ["prune.method=magnitude", "prune.schedule=gradual", "prune.retrain.epochs=3"],
    "bf16": ["prune.method=magnitude", "+trainer.precision=bf16-mixed"],
}


@pytest.mark.parametrize("prune", PRUNE.values(), ids=PRUNE.keys())
def test_a_pruned_run_on_the_gpu_keeps_its_masks(tmp_path, prune):
    res = run(make_cfg(tmp_path, *FAST, *prune))
    assert res["status"] == "ok", res.get("error")
    assert res["machine"]["device"].startswith("cuda:")  # trained on the GPU, and says so
    assert res["sparsity"] == pytest.approx(0.8, abs=1e-4)  # pruned weights exactly 0 after GPU steps
    state = torch.load(res["checkpoint"], map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in state["state_dict"].values())  # loads on a CPU machine
