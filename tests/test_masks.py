"""MaskSet: pruned weights stay zero under every optimiser; state, deepcopy, reports."""

import copy
import io

import pytest
import torch

from callbacks.masking import PruneAfterFit
from nmt_prune.init import init_weights
from nmt_prune.masks import MaskSet
from nmt_prune.model import Seq2Seq
from nmt_prune.pruner import Pruner
from tests.conftest import quiet_trainer, tiny_module


def _model(seed=0):
    torch.manual_seed(seed)
    model = Seq2Seq(23, 29, emb_size=8, hidden_size=12, layers=2, dropout=0.0)
    init_weights(model, "uniform", 0.1)  # one scale for all classes (torch's defaults differ by 10x)
    return model


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 23, (5, 7), generator=g)
    tgt = torch.randint(4, 29, (5, 6), generator=g)
    return src, torch.full((5,), 7), tgt


def _loss(model, batch):
    src, src_len, tgt = batch
    logits = model(src, src_len, tgt[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1))


OPTIMISERS = {
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9),
    "sgd_momentum_wd": lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9, weight_decay=0.1, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.5),
}


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_pruned_weights_stay_zero_after_optimizer_steps(name):
    model = _model()
    masks = Pruner("magnitude", "blind", 0.7).compute_masks(model)
    masks.apply(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = OPTIMISERS[name](model.parameters())
    masks.attach(model, opt)
    touched = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    # momentum and Adam state from dense steps first: the hardest case for "stays zero"
    for step in range(8):
        opt.zero_grad()
        _loss(model, _batch(step)).backward()
        if step >= 2:
            masks.mask_grads(model)
        for n, p in model.named_parameters():
            touched[n] |= p.grad.abs() > 1e-6
        opt.step()
    params = dict(model.named_parameters())
    for n, m in masks.masks.items():
        assert torch.all(params[n][~m] == 0), n  # exactly zero, every pruned weight
        live = m & touched[n]  # kept, and had a real gradient (embeddings of unseen words do not)
        assert torch.all(params[n][live] != before[n][live]), n  # every such weight trained
    assert masks.n_pruned() == round(0.7 * masks.n_masked())


def test_without_enforcement_optimisers_do_revive_weights():
    """The control: the test above would fail without the post-step re-zeroing."""
    model = _model()
    masks = Pruner("magnitude", "blind", 0.7).compute_masks(model)
    masks.apply(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.5)
    opt.zero_grad()
    _loss(model, _batch()).backward()
    opt.step()
    assert any(bool((dict(model.named_parameters())[n][~m] != 0).any()) for n, m in masks.masks.items())


def test_state_roundtrip_weights_only_and_deepcopy():
    model = _model()
    masks = Pruner("random", "uniform", 0.5, seed=3).compute_masks(model)
    masks.apply(model)
    buf = io.BytesIO()
    torch.save({"masks": masks.state_dict()}, buf)
    buf.seek(0)
    back = MaskSet.from_state_dict(torch.load(buf, weights_only=True)["masks"])
    assert set(back.masks) == set(masks.masks)
    assert all(torch.equal(back.masks[n], masks.masks[n]) for n in masks.masks)
    clone = copy.deepcopy(model)  # no re-parametrisation: names and deepcopy unchanged
    assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]
    batch = _batch()
    assert torch.equal(clone(*batch[:2], batch[2]), model(*batch[:2], batch[2]))


def test_report_counts_and_classes():
    model = _model()
    pruner = Pruner("magnitude", "uniform", 0.4, exclude=("softmax",), include_embeddings=False)
    masks = pruner.compute_masks(model)
    softmax_before = model.generator.weight.detach().clone()
    masks.apply(model)
    rep = masks.report(model, model.weight_classes())
    skipped = {"softmax", "src_embed", "tgt_embed"}
    assert set(rep["sparsity_by_class"]) == set(model.weight_classes()) - skipped
    assert all(abs(v - 0.4) < 0.01 for v in rep["sparsity_by_class"].values())
    assert rep["params"]["prunable"] == masks.n_masked()
    assert rep["params"]["total"] - rep["params"]["nonzero"] >= masks.n_pruned()
    assert rep["sparsity"] == pytest.approx(masks.n_pruned() / masks.n_masked())
    assert torch.equal(model.generator.weight, softmax_before)  # excluded class untouched


def test_and_is_monotone():
    model = _model()
    a = Pruner("random", "blind", 0.5, seed=1).compute_masks(model)
    b = Pruner("random", "blind", 0.5, seed=2).compute_masks(model)
    both = a & b
    assert both.n_pruned() >= max(a.n_pruned(), b.n_pruned())


def test_errors_name_the_problem():
    model = _model()
    with pytest.raises(KeyError, match="nope"):
        MaskSet({"nope": torch.ones(2, dtype=torch.bool)}).apply(model)
    with pytest.raises(TypeError, match="bool"):
        MaskSet({"generator.weight": torch.ones(2)})


def test_callback_prunes_in_setup_and_holds_masks_through_lightning_fit(toy_dm):

    from nmt_prune.module import NMTModule

    module = NMTModule(
        model={"emb_size": 8, "hidden_size": 12, "layers": 1, "dropout": 0.0},
        optim={
            "_target_": "torch.optim.SGD",
            "_partial_": True,
            "lr": 0.5,
            "momentum": 0.9,
            "weight_decay": 0.01,
        },
        lr_schedule={"name": "none"},
        eval={"val_bleu": False},
        data_state=toy_dm.state(),
    )
    pruner = PruneAfterFit("magnitude", "distribution", 0.6)
    trainer = quiet_trainer(max_steps=5, gradient_clip_val=1.0)
    trainer.fit(module, datamodule=toy_dm)
    assert pruner.masks is None  # not given to this trainer: the control
    trainer = quiet_trainer(max_steps=5, callbacks=[pruner], gradient_clip_val=1.0)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer.fit(module, datamodule=toy_dm)
    params = dict(module.model.named_parameters())
    assert pruner.masks.n_pruned() == round(0.6 * pruner.masks.n_masked())
    for n, m in pruner.masks.masks.items():
        assert torch.all(params[n][~m] == 0), n
        assert not torch.equal(params[n][m], before[n][m]), n  # the kept weights trained


def test_snip_masks_come_from_theta0_before_any_step_and_training_starts_there(toy_dm):
    import lightning.pytorch as pl

    from callbacks.masking import PruneAtInit

    module = tiny_module(toy_dm)
    init_weights(module.model, "uniform", 0.1)
    theta0 = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    expected = Pruner("snip", "blind", 0.8, settings={"batches": 2}).compute_masks(module.model, toy_dm)

    class Probe(pl.Callback):
        first = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.first is None:
                self.first = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}

    pruner, probe = PruneAtInit("snip", "blind", 0.8, settings={"batches": 2}), Probe()
    trainer = quiet_trainer(max_steps=3, callbacks=[pruner, probe])
    trainer.fit(module, datamodule=toy_dm)
    assert all(torch.equal(pruner.masks.masks[n], expected.masks[n]) for n in expected.masks)  # from theta0
    for n, w in probe.first.items():  # the first step starts from theta0, masked
        keep = pruner.masks.masks.get(n)
        assert torch.equal(w, theta0[n] * keep if keep is not None else theta0[n]), n
    assert pruner.data_used["batches"] == 2


def test_snip_scores_on_batches_or_a_fraction_and_reads_the_old_spelling(toy_dm):
    """prune.snip.batches (the first training batches) or prune.snip.fraction (a share of the
    training set, which replaces batches); an integer in fraction, the spelling from before the
    split, still means batches, with a FutureWarning."""
    import warnings

    torch.manual_seed(0)
    model = Seq2Seq(len(toy_dm.src_vocab), len(toy_dm.tgt_vocab), emb_size=8, hidden_size=12, layers=1)
    batches = Pruner("snip", "blind", 0.8, settings={"batches": 2, "fraction": None})
    new = batches.compute_masks(model, toy_dm)
    assert batches.data_used["batches"] == 2 and batches.data_used["data"] == 2
    with pytest.warns(FutureWarning, match=r"prune.snip.fraction=2 .*write prune.snip.batches=2"):
        old = Pruner("snip", "blind", 0.8, settings={"fraction": 2})
        old_masks = old.compute_masks(model, toy_dm)
    assert all(torch.equal(old_masks.masks[n], new.masks[n]) for n in new.masks)
    share = Pruner("snip", "blind", 0.8, settings={"batches": 2, "fraction": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spellings warn of nothing
        share.compute_masks(model, toy_dm)
    assert share.data_used["batches"] == len(toy_dm.train_dataloader())
    assert share.data_used["sentences"] == len(toy_dm.splits["train"].src)
