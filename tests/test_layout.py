"""The house's one-way dependencies (../shared/DESIGN.md): callbacks depend on nmt_prune; inside
nmt_prune only the pipelines, which wire callbacks into Trainers, import them; the report reads
results and imports neither the callbacks nor the training stack."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the composition root: the modules that build Trainers with the pruning/convergence callbacks
PIPELINES = {"nmt_prune/training.py", "nmt_prune/pruning.py", "nmt_prune/pruners.py"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_only_the_pipelines_import_callbacks():
    importers = {
        str(f.relative_to(ROOT))
        for f in (ROOT / "nmt_prune").rglob("*.py")
        if any(m == "callbacks" or m.startswith("callbacks.") for m in _imports(f))
    }
    assert importers == PIPELINES


def test_the_report_imports_neither_callbacks_nor_the_training_stack():
    heavy = ("callbacks", "nmt_prune.experiment", "nmt_prune.pruning", "nmt_prune.training", "lightning")
    for f in sorted((ROOT / "nmt_prune").glob("report*.py")):
        bad = [m for m in _imports(f) if m.startswith(heavy)]
        assert not bad, (f.name, bad)
