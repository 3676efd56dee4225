import pytest
import torch

from nmt_prune.data.datamodule import BucketBatchSampler, DataConfig, NMTDataModule, collate
from nmt_prune.data.text import BOS_ID, EOS_ID, PAD_ID


def test_collate_shapes_and_shift():
    b = collate([(0, [5, 6, EOS_ID], [7, 8]), (1, [9, EOS_ID], [10])])
    assert b["src"].tolist() == [[5, 6, EOS_ID], [9, EOS_ID, PAD_ID]]
    assert b["src_len"].tolist() == [3, 2]
    assert b["tgt_in"].tolist() == [[BOS_ID, 7, 8], [BOS_ID, 10, PAD_ID]]
    assert b["tgt_out"].tolist() == [[7, 8, EOS_ID], [10, EOS_ID, PAD_ID]]
    assert b["ntok"] == int((b["tgt_out"] != PAD_ID).sum()) == 5


def test_bucket_sampler_covers_each_index_once_and_buckets():
    g = torch.Generator().manual_seed(0)
    lengths = [(int(n), int(n)) for n in torch.randint(1, 60, (1000,), generator=g)]
    s = BucketBatchSampler(lengths, 32, shuffle=True, seed=1, pool=10)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(s)
    spread = sum(max(lengths[i][0] for i in b) - min(lengths[i][0] for i in b) for b in batches)
    assert spread / len(batches) < 10  # random batches would spread over ~55
    s.set_epoch(1)
    assert list(s) != batches  # reshuffled per epoch
    evals = list(BucketBatchSampler(lengths, 32, shuffle=False))
    flat = [lengths[i] for b in evals for i in b]
    assert flat == sorted(flat)


def test_toy_datamodule(toy_dm):
    assert len(toy_dm.splits["train"].src) == 300
    assert len(toy_dm.splits["test"].tgt_raw) == 40
    batch = next(iter(toy_dm.train_dataloader()))
    assert batch["src"].shape[0] == 16
    assert 150 < len(toy_dm.src_vocab) < 1000


def test_max_len_filters_training_only(tmp_path):
    cfg = DataConfig(toy_sizes={"train": 200, "val": 30, "test": 30}, max_len=8)
    dm = NMTDataModule(cfg, tmp_path, seed=0)
    dm.setup()
    assert dm.n_dropped["too_long"] > 0
    assert all(len(s) <= 9 for s in dm.splits["train"].src)  # 8 tokens + EOS
    assert len(dm.splits["val"].src) == 30 and max(len(s) for s in dm.splits["val"].src) > 9


def test_empty_vocab_is_a_clear_error(tmp_path):
    cfg = DataConfig(toy_sizes={"train": 50, "val": 5, "test": 5}, min_freq=10**6)
    with pytest.raises(ValueError, match="data.min_freq"):
        NMTDataModule(cfg, tmp_path).setup()


def test_missing_multi30k_files_offline_message(tmp_path):
    cfg = DataConfig(
        name="multi30k",
        root=str(tmp_path / "nope"),
        src_lang="en",
        tgt_lang="de",
        splits={"train": "train", "val": "val", "test": "test_2016_flickr"},
        download=False,
    )
    with pytest.raises(FileNotFoundError, match="data.root"):
        NMTDataModule(cfg, tmp_path).setup()


def test_toy_cache_is_keyed_by_sizes(tmp_path):
    for n in (100, 150):
        cfg = DataConfig(toy_sizes={"train": n, "val": 10, "test": 10})
        dm = NMTDataModule(cfg, tmp_path)
        dm.setup()
        assert len(dm.splits["train"].src) == n


@pytest.mark.parametrize("split", ["val", "test_2016_flickr"])
def test_an_empty_evaluation_split_fails_at_setup_naming_the_file(tmp_path, split):
    for name in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "de"):
            text = "" if name == split else "a b c\nd e f\n"
            (tmp_path / f"{name}.{lang}").write_text(text)
    splits = {"train": "train", "val": "val", "test": "test_2016_flickr"}
    cfg = DataConfig(
        name="multi30k", root=str(tmp_path), src_lang="en", tgt_lang="de", splits=splits, download=False
    )
    with pytest.raises(ValueError, match=rf"split is empty: .*{split}.en has no lines"):
        NMTDataModule(cfg, tmp_path / "cache").setup()
