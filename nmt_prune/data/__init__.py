"""Text -> tensors: toy corpus, Multi30k files, tokenisers, vocabularies, batches."""

from nmt_prune.data.datamodule import DataConfig, NMTDataModule

__all__ = ["DataConfig", "NMTDataModule"]
