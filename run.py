"""Entry point: ``python run.py [overrides]`` or ``python run.py -m key=a,b`` (multirun).

Composes the config from ``conf/`` and hands it to ``nmt_prune.experiment.run``.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from nmt_prune.experiment import run  # after Hydra parsed the command line: fast --help

    results = run(cfg, overrides=list(HydraConfig.get().overrides.task))
    return results.get("test_bleu")


if __name__ == "__main__":
    main()
