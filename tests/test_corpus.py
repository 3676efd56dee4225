import gzip
import hashlib
from pathlib import Path

import pytest

from nmt_prune.data.corpus import download_multi30k, drop_noise, read_parallel


def _serve(tmp_path: Path, files: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Write .gz files into a local directory and return its file:// URL and their checksums."""
    srv = tmp_path / "server"
    srv.mkdir()
    sums = {}
    for name, text in files.items():
        (srv / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
        sums[name] = hashlib.sha256(text.encode()).hexdigest()
    return srv.as_uri(), sums


def test_download_decompresses_and_checks(tmp_path):
    url, sums = _serve(tmp_path, {"train.en": "a b\nc d\n", "train.de": "x y\nz w\n"})
    dest = tmp_path / "data"
    download_multi30k(dest, ["train.en", "train.de"], base_url=url, checksums=sums)
    assert (dest / "train.en").read_text() == "a b\nc d\n"
    assert (dest / "train.de").read_text() == "x y\nz w\n"


def test_download_rejects_bad_checksum_and_leaves_nothing(tmp_path):
    url, sums = _serve(tmp_path, {"val.en": "hello\n"})
    dest = tmp_path / "data"
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        download_multi30k(dest, ["val.en"], base_url=url, checksums={"val.en": "0" * 64})
    assert not dest.exists()  # no file that looks valid, and no directory the failed download made


def test_download_missing_says_where_to_put_files(tmp_path):
    url, _ = _serve(tmp_path, {})
    with pytest.raises(FileNotFoundError, match="Put the Multi30k files"):
        download_multi30k(tmp_path / "data" / "m30k", ["test_2016_flickr.de"], base_url=url, checksums={})
    assert not (tmp_path / "data").exists()  # a mistyped data.root is not created as an empty directory


def test_read_parallel_errors(tmp_path):
    (tmp_path / "a.en").write_text("1\n2\n")
    (tmp_path / "a.de").write_text("1\n")
    with pytest.raises(ValueError, match="2 lines.*1"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")
    with pytest.raises(FileNotFoundError, match="b.en"):
        read_parallel(tmp_path / "b.en", tmp_path / "a.de")
    (tmp_path / "c.en").write_bytes("one\ntwo caf\u00e9\n".encode("latin1"))
    (tmp_path / "c.de").write_text("eins\nzwei\n")
    with pytest.raises(ValueError, match=r"c.en is not UTF-8 text: line 2"):
        read_parallel(tmp_path / "c.en", tmp_path / "c.de")


def test_drop_noise():
    src, tgt, n = drop_noise(["a", "b", "", "d"], ["1", "@@", "3", " 4 "])
    assert (src, tgt, n) == (["a", "d"], ["1", " 4 "], 2)
