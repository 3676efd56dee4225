"""Which code decides what a dense training learns: the dense cache's code fingerprint.

``code_version()`` hashes ``CODE_FILES`` as syntax trees without docstrings, so comments,
formatting and docs do not change a cache key and a changed line of code does. Every module the
dense training imports is in ``CODE_FILES`` or declared harmless in ``NOT_LEARNING``
(tests/test_baseline.py checks the two lists cover them all).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

#: the source files (under the project root) whose code decides what a dense training learns
CODE_FILES = (
    "nmt_prune/model.py",
    "nmt_prune/init.py",  # the initial weights
    "nmt_prune/module.py",
    "nmt_prune/training.py",
    "nmt_prune/search.py",
    "nmt_prune/data/text.py",
    "nmt_prune/data/datamodule.py",
    "nmt_prune/data/batching.py",
    "nmt_prune/data/corpus.py",
    "nmt_prune/data/toy.py",
    "callbacks/convergence.py",
)
#: code the dense training imports that does not change what it learns or the figures it records
#: (tests/test_baseline.py checks that every module the training imports is in one of the lists)
NOT_LEARNING = (
    "nmt_prune/checkpoints.py",  # checkpoint I/O
    "nmt_prune/metrics.py",  # sacreBLEU calls (its version is in the signature)
    "nmt_prune/names.py",  # the names of the closed choices and metrics
    "nmt_prune/cache_lock.py",  # waiting for another job's training of the same entry
    "nmt_prune/lending.py",  # how many threads the training runs with (waiting jobs lend theirs)
    "nmt_prune/stats.py",  # sparsity statistics
    "nmt_prune/allocation.py",  # (imported by stats; pruning only)
    "callbacks/rng_state.py",  # puts the generators back on a resume: an uninterrupted fit is the same
    "callbacks/divergence.py",  # fails a fit whose loss is NaN: a finite fit is untouched
    "nmt_prune/validate.py",  # config checks and the user-error classes (DataMissing for the data files)
)


def _code_digest(path: Path) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # docstrings are documentation, not code
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """A hash of ``CODE_FILES`` as syntax trees without docstrings (16 hex digits)."""
    root = Path(__file__).resolve().parent.parent
    blob = "".join(f"{f}:{_code_digest(root / f)}\n" for f in CODE_FILES)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
