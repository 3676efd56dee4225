"""Parallel text files on disk: reading and cleaning, the Multi30k downloader, the toy corpus."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from nmt_prune.data.toy import generate_toy_corpus
from nmt_prune.validate import DataMissing, DataUnusable

log = logging.getLogger(__name__)

# multi30k/dataset, task 1 raw files, pinned to the snapshot the project was checked against.
MULTI30K_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/"
    "a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw"
)
# SHA-256 of the *decompressed* files (the repository publishes no checksums of its .gz files;
# these are of the text that the .gz files decompress to, so they pin the content itself).
MULTI30K_SHA256 = {
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
}
NOISE_LINES = ("", "@@")  # a pair is dropped when either side (stripped) is one of these


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_fingerprint(paths: list[Path]) -> str:
    """One hash of the files' names (without their directory) and contents (16 hex digits)."""
    blob = "".join(f"{p.name}:{sha256(p)}\n" for p in paths)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def download_multi30k(
    dest: Path,
    files: list[str],
    base_url: str | None = None,
    checksums: dict[str, str] | None = None,
) -> None:
    """Download ``{base_url}/{name}.gz`` for each name in ``files``, decompress into ``dest`` and
    check the SHA-256 of the text. A file is moved into place only after its checksum matched, so
    an interrupted or corrupted download never leaves a file that looks valid.

    Raises ``DataMissing`` (a ``FileNotFoundError``: offline, or the URL is missing) or
    ``ValueError`` (checksum).
    """
    checksums = MULTI30K_SHA256 if checksums is None else checksums
    base_url = MULTI30K_URL if base_url is None else base_url  # read at call time (tests point it away)
    created = [p for p in (dest, *dest.parents) if not p.exists()]  # removed again if nothing comes
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _download(dest, files, base_url, checksums)
    except BaseException:
        for p in created:  # deepest first: a failed download leaves no empty data.root behind
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise


def _download(dest: Path, files: list[str], base_url: str, checksums: dict[str, str]) -> None:
    for name in files:
        if (dest / name).exists():
            continue
        url = f"{base_url}/{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                payload = resp.read()
        except (urllib.error.URLError, OSError) as e:
            raise DataMissing(
                f"data.root={dest} lacks {name} and its download failed ({url}: {e}). Offline? "
                f"Put the Multi30k files {sorted(files)} (plain text, one sentence per line) "
                f"there, or point data.root at a directory that has them."
            ) from e
        with tempfile.NamedTemporaryFile(dir=dest, delete=False) as tmp:
            tmp.write(gzip.decompress(payload))
        expected, got = checksums.get(name), sha256(Path(tmp.name))
        if expected is not None and got != expected:
            os.unlink(tmp.name)
            raise DataUnusable(f"SHA-256 mismatch for {url}: got {got}, expected {expected}")
        shutil.move(tmp.name, dest / name)
        log.info("downloaded %s -> %s", url, dest / name)


def write_toy_corpus(dest: Path, seed: int, sizes: dict[str, int], langs: tuple[str, str]) -> None:
    """Generate the toy corpus into ``dest/{split}.{lang}`` unless it is already there."""
    names = [dest / f"{split}.{lang}" for split in sizes for lang in langs]
    if all(p.exists() for p in names):
        return
    dest.mkdir(parents=True, exist_ok=True)
    for split, pair in generate_toy_corpus(seed, sizes).items():
        for lang, lines in zip(langs, pair):
            tmp = dest / f".{split}.{lang}.{os.getpid()}"
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
            tmp.replace(dest / f"{split}.{lang}")  # atomic: parallel jobs may race here


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataUnusable(
            f"{path} is not UTF-8 text: line {line}, byte {e.start} ({e.reason}); "
            f"convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


def read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    """Read two aligned text files; raise a clear error if missing or of different lengths."""
    for p in (src_path, tgt_path):
        if not p.is_file():
            raise FileNotFoundError(f"data file {p} does not exist (check data.root)")
    src, tgt = _read_utf8(src_path).split("\n"), _read_utf8(tgt_path).split("\n")
    for lines in (src, tgt):
        if lines and lines[-1] == "":
            lines.pop()
    if len(src) != len(tgt):
        raise DataUnusable(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: they must be aligned"
        )
    return src, tgt


def drop_noise(src: list[str], tgt: list[str]) -> tuple[list[str], list[str], int]:
    """Drop pairs where either side is empty or a lone ``@@`` (2 such lines in Multi30k
    train.de). Returns (src, tgt, number dropped)."""
    keep = [
        i
        for i, (s, t) in enumerate(zip(src, tgt))
        if s.strip() not in NOISE_LINES and t.strip() not in NOISE_LINES
    ]
    return [src[i] for i in keep], [tgt[i] for i in keep], len(src) - len(keep)
