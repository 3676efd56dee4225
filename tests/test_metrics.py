import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nmt_prune.data.text import Tokenizer
from nmt_prune.metrics import bleu_scores

REFS = ["The cat sat on the mat.", "A man is riding a red bike down the street.", "Two dogs play."]
HYPS = ["the cat sat on a mat.", "A man rides a red bike on the street.", "Two dogs are playing."]


def _cli(tmp_path: Path, *flags: str) -> float:
    (tmp_path / "ref.txt").write_text("\n".join(REFS) + "\n")
    (tmp_path / "hyp.txt").write_text("\n".join(HYPS) + "\n")
    exe = shutil.which("sacrebleu") or str(Path(sys.executable).parent / "sacrebleu")
    cmd = [exe, str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"), "-b", "-w", "4", *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def test_bleu_equals_sacrebleu_cli(tmp_path):
    scores = bleu_scores(HYPS, REFS, Tokenizer("moses", "en").tokenize)
    assert scores["bleu"] == pytest.approx(_cli(tmp_path), abs=0.01)
    assert scores["bleu_lc"] == pytest.approx(_cli(tmp_path, "-lc"), abs=0.01)
    assert scores["bleu_lc"] > scores["bleu"]  # "the cat" matches "The cat" only lowercased
    assert "case:mixed" in scores["signature"] and "tok:13a" in scores["signature"]


def test_perfect_and_mismatched():
    assert bleu_scores(REFS, REFS)["bleu"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 hypotheses for 3"):
        bleu_scores(HYPS[:2], REFS)
