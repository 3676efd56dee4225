"""The closed choices of the config, in one place and free of heavy imports: the config checks
(``validate``, ``plan``) read them before torch and Lightning are imported, so a wrong name fails
in about a second; the modules that implement each choice import their list from here.
"""

#: Luong's attention scores (``model.attention``; nmt_prune/model.py): general (h_t^T W_a h_s) or
#: dot (h_t^T h_s), Luong, Pham & Manning 2015 eq. 8
ATTENTION_TYPES = ("general", "dot")
#: trainer keys that change how a run looks, not what it learns (the dense cache key and the
#: report's lines ignore them)
TRAINER_COSMETIC = ("enable_progress_bar", "log_every_n_steps", "enable_model_summary")
#: allocation schemes (``prune.scheme``; nmt_prune/allocation.py)
SCHEMES = ("blind", "uniform", "distribution")
#: the weight classes that are embeddings (``prune.include_embeddings``)
EMBEDDING_CLASSES = ("src_embed", "tgt_embed")
#: pruning schedules (``prune.schedule``; nmt_prune/schedules.py)
SCHEDULES = ("one_shot", "iterative", "gradual", "linear")
#: LR schedules that decide when a fit has converged (``lr_schedule.name``; callbacks/convergence.py)
CONVERGENCE_RULES = ("converge", "early_stop")
#: every ``lr_schedule.name`` (nmt_prune/module.py)
LR_SCHEDULES = ("none", "halving", "plateau", *CONVERGENCE_RULES)
#: ``prune.rpp.penalty``: RPP's proximal steps, or the plain l1 term in the loss it is compared with
RPP_PENALTIES = ("proximal", "l1")
#: ``loss.normalize``: the training loss is the batch's summed token losses over its token count
#: (token) or over its sentence count (sentence: Luong et al. 2015 and See et al. 2016, whose SGD
#: learning rate 1.0 and clipping at 5 assume it: Luong's trainLSTM.m, on which See et al. built,
#: sums the token costs, divides the gradient by the batch size, clips that norm at 5)
LOSS_NORMALIZATIONS = ("token", "sentence")
#: ``loss.weight_penalty.type``
WEIGHT_PENALTIES = ("none", "l1", "l2")
#: when a criterion can prune (``Criterion.timings``; nmt_prune/criteria.py)
TIMINGS = ("after_fit", "at_init", "during")
#: ``prune.timing``: auto is each criterion's default timing
PRUNE_TIMINGS = ("auto", *TIMINGS)
#: ``prune.rewind``: retrain the survivors, restart from theta_0 (lottery ticket), or a fresh init
REWINDS = ("none", "init", "reinit")
#: ``prune.retrain.until``: a fixed number of epochs, or until the convergence rule stops it
RETRAIN_UNTIL = ("epochs", "converged")
#: OBD's Hessian-diagonal estimators (``prune.obd.estimator``; nmt_prune/saliency.py)
OBD_ESTIMATORS = ("fisher", "ggn_mc", "exact")


def class_names(layers: int) -> list[str]:
    """The weight classes of See et al. 2016 for a model of ``layers`` LSTM layers, in order
    (``Seq2Seq.weight_classes()`` maps exactly these to parameters; tests/test_model.py checks)."""
    return [
        "src_embed",
        "tgt_embed",
        *[f"encoder.layer{k}" for k in range(layers)],
        *[f"decoder.layer{k}" for k in range(layers)],
        "attention",
        "softmax",
    ]


# Metric names the loggers, the checkpoint monitor and the convergence rule use (slashes: W&B
# groups them into panels); the per-split ones are f"{split}/ppl" etc. (module._eval_end).
TRAIN_LOSS = "train/loss"
VAL_PPL = "val/ppl"
#: val perplexity once a schedule has reached its final sparsity (inf before): the monitor of
#: scheduled fits, so the best checkpoint is one at the target
VAL_PPL_AT_TARGET = "val/ppl_at_target"
VAL_BLEU = "val/bleu"
TEST_PPL = "test/ppl"
TEST_BLEU = "test/bleu"
SPARSITY = "prune/sparsity"
