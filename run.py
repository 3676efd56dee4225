"""Entry point: ``python run.py [overrides]`` or ``python run.py -m key=a,b`` (multirun).

Composes the config from ``conf/`` and hands it to ``nmt_prune.experiment.run``.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nmt_prune.plan import check  # (and the prune node's schema, nmt_prune/schema.py)
from nmt_prune.validate import ConfigError, Diverged


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    launcher = str(hc.launcher.get("_target_", ""))
    job = {
        "multirun": str(hc.mode) == "RunMode.MULTIRUN",
        "sweep_dir": str(hc.sweep.dir),
        "name": hc.job.override_dirname,
        "parallel_jobs": int(hc.launcher.get("n_jobs", 1)) if "joblib" in launcher.lower() else 1,
    }
    try:
        if not job["multirun"]:
            # before torch and Lightning are imported: a typo fails in about a second
            check(cfg, list(hc.overrides.task))
        from nmt_prune.experiment import run  # after Hydra parsed the command line: fast --help

        results = run(cfg, overrides=list(hc.overrides.task), job=job)
    except (ConfigError, Diverged) as e:
        if job["multirun"]:
            raise  # recorded in the job's results.json; the multirun goes on and exits non-zero
        print(f"error: {e}", file=sys.stderr)  # a user's mistake or choice: the message, no traceback
        sys.exit(2 if isinstance(e, ConfigError) else 1)
    return results.get("test_bleu")


if __name__ == "__main__":
    main()
