"""nmt_prune.magnitudes: per class, the share class-blind pruning keeps (against a global threshold
computed here by sorting) and the distance from theta_0; the CLI on a saved checkpoint."""

import torch

from nmt_prune.magnitudes import class_table, main
from nmt_prune.model import Seq2Seq


def _model(seed: int) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(23, 29, emb_size=8, hidden_size=12, layers=2)


def test_kept_shares_are_a_global_magnitude_threshold_and_moved_is_the_distance_from_theta0():
    m, m0 = _model(0), _model(1)
    params = {k: v.detach() for k, v in m.named_parameters()}
    theta0 = {k: v.detach() for k, v in m0.named_parameters()}
    classes = m.weight_classes()
    table = class_table(params, classes, [50, 80], theta0)
    weights = {c: [n for n in ns if params[n].dim() >= 2] for c, ns in classes.items()}  # no biases
    every = torch.cat([params[n].abs().flatten() for ns in weights.values() for n in ns])
    for pct in (50, 80):
        k = round(pct / 100 * every.numel())
        threshold = every.sort().values[k - 1]  # the k-th smallest |w| is the last one pruned
        for c, ns in weights.items():
            w = torch.cat([params[n].abs().flatten() for n in ns])
            assert table[c][f"kept@{pct}"] == int((w > threshold).sum()) / w.numel()
    for c, ns in weights.items():
        d = torch.cat([(params[n] - theta0[n]).flatten() for n in ns]).abs()
        assert table[c]["median_moved"] == d.median().item() and table[c]["weights"] == d.numel()
    assert "median_moved" not in class_table(params, classes, [50])["softmax"]


def test_cli_reads_a_checkpoint_and_the_theta0_beside_it(tmp_path, capsys):
    m = _model(2)
    torch.save({"state_dict": {f"model.{k}": v for k, v in m.state_dict().items()}}, tmp_path / "best.ckpt")
    torch.save(m.state_dict(), tmp_path / "theta0.pt")  # nothing moved
    main([str(tmp_path / "best.ckpt"), "--pct", "90"])
    out = capsys.readouterr().out.splitlines()
    assert "blind 90% keeps" in out[1] and "median |w - w0|" in out[1]
    rows = {line.split(" | ")[0].strip(): line.split(" | ") for line in out[2:]}
    assert list(rows) == list(m.weight_classes()) and all(r[-1] == "0.0000" for r in rows.values())
