"""W&B sweep definitions (``sweeps/*.yaml``), generated from the Hydra presets (``conf/sweep/``).

    python -m nmt_prune.wandb_sweeps            # (re)write sweeps/*.yaml
    python -m nmt_prune.wandb_sweeps --check    # fail if a file is out of date (the tests do this)

Each definition is the preset's grid for ``wandb agent``: ``+sweep=NAME`` as a fixed parameter
(the preset's fixed keys) and every swept key as a grid parameter, run as
``command: [${env}, ${interpreter}, ${program}, ${args_no_hyphens}]`` so that the agent calls
``python run.py +sweep=NAME key=value ...``. W&B sweeps need the W&B server: offline users run
the same grid with Hydra (``python run.py -m +sweep=NAME``) and upload with ``wandb sync``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]


def parse_value(text: str) -> Any:
    """A swept value as Hydra's command line reads it (``1e-6`` a float: YAML would keep a string)."""
    return OverridesParser.create().parse_override(f"k={text.strip()}").value()


def definition(preset: Path) -> dict[str, Any]:
    """The W&B sweep that runs the grid of the Hydra preset file ``preset``."""
    raw = yaml.safe_load(preset.read_text())
    comments = [ln[1:].strip() for ln in preset.read_text().splitlines() if ln.startswith("#")]
    about = " ".join(c for c in comments if c and not c.startswith(("@package", "python run.py")))
    params: dict[str, Any] = {"+sweep": {"value": preset.stem}}
    for key, values in raw["hydra"]["sweeper"]["params"].items():
        params[key] = {"values": [parse_value(v) for v in str(values).split(",")]}
    return {
        "name": preset.stem,
        "description": about,
        "program": "run.py",
        "method": "grid",
        "metric": {"name": "test_bleu", "goal": "maximize"},
        "parameters": params,
        "command": COMMAND,
    }


def render(preset: Path) -> str:
    header = f"# Generated from conf/sweep/{preset.name} by `python -m nmt_prune.wandb_sweeps`: do not edit\n"
    header += f"#   wandb sweep sweeps/{preset.name} && wandb agent <sweep id>   (needs the W&B server)\n"
    return header + yaml.safe_dump(definition(preset), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if sweeps/*.yaml differ from the presets")
    args = ap.parse_args(argv)
    out = ROOT / "sweeps"
    out.mkdir(exist_ok=True)
    stale = []
    for preset in sorted((ROOT / "conf" / "sweep").glob("*.yaml")):
        target, text = out / preset.name, render(preset)
        if not target.exists() or target.read_text() != text:
            stale.append(target.name)
            if not args.check:
                target.write_text(text)
    extra = sorted(p.name for p in out.glob("*.yaml") if not (ROOT / "conf" / "sweep" / p.name).exists())
    if args.check and (stale or extra):
        print(f"out of date: {stale}, without a preset: {extra}; run python -m nmt_prune.wandb_sweeps")
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(list(out.glob('*.yaml')))} W&B sweep files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
