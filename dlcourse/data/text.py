"""Character-level text for discrete diffusion and its autoregressive baseline: text8 and any local text file.

Vocabulary. 27 symbols, ids in ASCII order: space = 0, 'a' = 1, ..., 'z' = 26 (``ALPHABET[i]`` is the character of
id i), so ``VOCAB_SIZE = 27``. Absorbing / masked diffusion adds one more id, ``MASK_ID = 27``, shown as "_" by
`decode`; a model over tokens-plus-mask therefore has 28 outputs.

Normalisation. `normalize_text` is the character step of Matt Mahoney's ``wikifil.pl``, which made text8 from
Wikipedia: ASCII upper case to lower case; each digit spelled out as a word between spaces (0 -> " zero ", ...,
9 -> " nine "); every other character that is not a-z (punctuation, newlines, accented and all non-ASCII
letters) becomes a space; runs of spaces collapse to one. (Wikipedia-specific markup removal is not part of it.)
Unlike wikifil, which emits a leading space per line, the result has no leading or trailing space.

Corpora. `prepare_corpus` turns ``"text8"`` or a path to a text file into three uint8 token files
``{train,valid,test}.bin`` plus ``meta.json`` in a cache folder ``ROOT/corpora/<key>/`` (ROOT = ``root`` or
``data_root()``), reused on later calls. The split is contiguous: of n tokens, the last n // 20 are "test", the
n // 20 before them "valid" and the rest "train", which for text8's 100,000,000 characters is the standard
90M / 5M / 5M split. The cache folder is built in a temporary folder and renamed into place in one step, so it is
complete or absent; an existing folder is never overwritten.

Batches. A `ChunkSampler` draws random windows with a ``torch.Generator`` (a batch depends only on the generator
state, so a resumed run sees the same batches); `iter_chunks` walks a split in order for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from typing import Iterator
from urllib.error import URLError

import numpy as np
import torch

from ..errors import ConfigError, DataMissingError, DlcourseError, ShapeError
from .paths import data_root

__all__ = [
    "ALPHABET",
    "VOCAB_SIZE",
    "MASK_ID",
    "MASK_CHAR",
    "SPLITS",
    "TEXT8_URL",
    "TEXT8_SHA256",
    "TEXT8_ZIP_SHA256",
    "TEXT8_CHARS",
    "TextEncodingError",
    "normalize_text",
    "encode",
    "decode",
    "download_text8",
    "PROSE_NAME",
    "PROSE_FILE",
    "PROSE_SHA256",
    "PROSE_ABOUT",
    "prose_corpus_path",
    "Corpus",
    "prepare_corpus",
    "load_split",
    "spread_windows",
    "split_sizes",
    "ChunkSampler",
    "iter_chunks",
]

ALPHABET = " abcdefghijklmnopqrstuvwxyz"
VOCAB_SIZE = 27
MASK_ID = 27
MASK_CHAR = "_"
SPLITS = ("train", "valid", "test")

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
# Published checksums (the same values appear in several independent projects that pin text8).
TEXT8_ZIP_SHA256 = "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232"  # text8.zip, 31,344,016 bytes
TEXT8_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"  # the unzipped file "text8"
TEXT8_CHARS = 100_000_000
# The course's prose corpus (the shipped *_prose checkpoints are trained on it): 11,671,497 characters of
# public-domain English, Jane Austen's six novels, the King James Bible, the Jargon File and the BSD fortunes, in that
# order, normalised like text8. It has no download (see `prose_corpus_path`).
PROSE_NAME = "english-prose"
PROSE_FILE = "english-prose-text8.txt.gz"
PROSE_SHA256 = "3bfd9d00442efe22ba6b0d5ea2408c997c8b825443ee212ab020659f40ea0736"  # of the uncompressed text
PROSE_ABOUT = ("the english-prose corpus (11.7M characters of public-domain English: Austen's six novels, the King "
               "James Bible, the Jargon File, the BSD fortunes, text8-normalised; no download: see README 'Data')")

_CACHE_VERSION = 1
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}


class TextEncodingError(DlcourseError, ValueError):
    """A character outside the 27-symbol alphabet, or a token id outside 0..27."""


# ----------------------------------------------------------------------------------------------------------------
# normalisation, encoding, decoding
# ----------------------------------------------------------------------------------------------------------------

_CASE_AND_DIGITS = str.maketrans(
    {
        **{chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)},  # ASCII only, like Perl's tr/A-Z/a-z/
        **{str(d): f" {w} " for d, w in enumerate(_DIGIT_WORDS)},
    }
)
_NOT_A_TO_Z = re.compile(r"[^a-z]+")

_ENCODE_TABLE = np.full(256, 255, dtype=np.uint8)  # byte -> id, 255 = not in the alphabet
_ENCODE_TABLE[[ord(c) for c in ALPHABET]] = np.arange(VOCAB_SIZE, dtype=np.uint8)
_DECODE_TABLE = np.frombuffer((ALPHABET + MASK_CHAR).encode("ascii"), dtype=np.uint8)  # id -> byte, (28,)


def normalize_text(s: str) -> str:
    """Normalise like text8's ``wikifil.pl``: lower-case A-Z, spell digits ("1984" -> "one nine eight four"),
    turn every other non a-z character into a space, collapse runs of spaces, strip both ends.

    >>> normalize_text("In 1984, Émile said: \\"Hi!\\"")
    'in one nine eight four mile said hi'
    """
    return _NOT_A_TO_Z.sub(" ", s.translate(_CASE_AND_DIGITS)).strip(" ")


def _encode_bytes(raw: np.ndarray) -> np.ndarray:
    ids = _ENCODE_TABLE[raw]  # (n,) uint8
    bad = np.flatnonzero(ids == 255)
    if bad.size:
        pos = int(bad[0])
        raise TextEncodingError(
            f"cannot encode character {chr(raw[pos])!r} at position {pos} ({bad.size} such): the vocabulary is "
            f"space and a-z; run normalize_text first"
        )
    return ids


def encode(text: str | bytes, return_tensor: bool = False) -> np.ndarray | torch.Tensor:
    """Characters -> token ids (space = 0, a-z = 1..26): a uint8 array (n,), or an int64 tensor (n,) with
    ``return_tensor=True``. Any other character raises `TextEncodingError` naming it and its position."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(text, dtype=np.uint8)
    else:
        try:
            raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as exc:
            raise TextEncodingError(
                f"cannot encode character {text[exc.start]!r} at position {exc.start}: the vocabulary is space and "
                f"a-z; run normalize_text first"
            ) from None
    ids = _encode_bytes(raw)
    return torch.from_numpy(ids.astype(np.int64)) if return_tensor else ids


def decode(ids) -> str | list[str]:
    """Token ids -> text; ``MASK_ID`` is shown as "_". A 1-D sequence gives a str, a 2-D batch (B, L) a list of str."""
    if isinstance(ids, torch.Tensor):
        arr = ids.detach().cpu().numpy()
    else:
        arr = np.asarray(ids)
    if arr.ndim == 2:
        return [decode(row) for row in arr]
    if arr.ndim != 1:
        raise ShapeError(f"decode takes token ids of shape (L,) or (B, L), got {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > MASK_ID):
        raise TextEncodingError(f"token ids must be integers in 0..{MASK_ID}, got values in [{arr.min()}, {arr.max()}]")
    return _DECODE_TABLE[arr.astype(np.int64)].tobytes().decode("ascii")


# ----------------------------------------------------------------------------------------------------------------
# text8 download
# ----------------------------------------------------------------------------------------------------------------


def _sha256_file(path: pathlib.Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _text8_hint(target: pathlib.Path) -> str:
    return (f"download {TEXT8_URL} and unzip it so that the file {target} exists ({TEXT8_CHARS:,} bytes, "
            f"sha256 {TEXT8_SHA256})")


def prose_corpus_path(root: str | os.PathLike | None = None) -> pathlib.Path:
    """The path of the verified prose corpus ``ROOT/english-prose-text8.txt.gz`` (what ``data="english-prose"``
    trains on); a one-line `DataMissingError` when it is missing, unreadable or another text.

    The file was assembled for this course from four Debian packages (r-cran-janeaustenr, bible-kjv-text,
    jargon-text, fortunes; see README 'Data'); no script here rebuilds it byte for byte, so the ``*_prose``
    figures reproduce with that file (checked by the sha256 of its text, ``PROSE_SHA256``) and elsewhere one trains
    on text8 or on one's own text with ``--data FILE``.
    """
    target = (pathlib.Path(root).expanduser() if root is not None else data_root()) / PROSE_FILE
    hint = "see README 'Data', or train on --data text8 or --data FILE"
    if not target.is_file():
        raise DataMissingError(f"the {PROSE_NAME} corpus is not at {target}: {hint}")
    import gzip

    digest = hashlib.sha256()
    try:
        with gzip.open(target, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError) as exc:
        raise DataMissingError(f"cannot decompress {target} ({_one_line(exc)}): {hint}") from None
    if digest.hexdigest() != PROSE_SHA256:
        raise DataMissingError(f"{target} is not the {PROSE_NAME} text (its sha256 differs): pass its path as "
                               "--data to train on it as a file of its own")
    return target


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _verify_text8(path: pathlib.Path) -> None:
    size = path.stat().st_size
    if size != TEXT8_CHARS:
        raise DataMissingError(f"{path} has {size:,} bytes, not text8's {TEXT8_CHARS:,}: delete it and "
                               + _text8_hint(path))
    digest = _sha256_file(path)
    if digest != TEXT8_SHA256:
        raise DataMissingError(f"{path} has sha256 {digest}, not text8's: delete it and " + _text8_hint(path))


def _fetch(url: str, dest: pathlib.Path, expected_sha256: str) -> None:
    """Stream ``url`` into ``dest`` through a temporary file, checking its sha256 before it gets its name."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                h.update(block)
                out.write(block)
        if h.hexdigest() != expected_sha256:
            raise DataMissingError(f"the download of {url} has sha256 {h.hexdigest()}, expected {expected_sha256} "
                                   f"(a changed or corrupt file); " + _text8_hint(dest.parent / "text8"))
        os.replace(tmp, dest)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)


def _extract_member(zip_path: pathlib.Path, member: str, dest: pathlib.Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(zip_path) as zf, zf.open(member) as src:
            shutil.copyfileobj(src, out, 1 << 22)
        os.replace(tmp, dest)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)


def download_text8(root: str | os.PathLike | None = None, download: bool = True) -> pathlib.Path:
    """The path of the verified text8 file, ``ROOT/text8/text8`` (100,000,000 characters of normalised English
    Wikipedia, Mahoney 2006), downloading ``text8.zip`` from ``TEXT8_URL`` if needed.

    Both the zip and the unzipped file are checked against their published sha256. A file already at the target
    that fails the check is reported, never overwritten. Without a network (or with ``download=False``) a
    `DataMissingError` names the URL and the exact path the unzipped file must have.
    """
    folder = (pathlib.Path(root).expanduser() if root is not None else data_root()) / "text8"
    target, zip_path = folder / "text8", folder / "text8.zip"
    if target.exists():
        _verify_text8(target)
        return target
    if not zip_path.exists():
        if not download:
            raise DataMissingError(f"text8 is not at {target} and download=False: " + _text8_hint(target))
        folder.mkdir(parents=True, exist_ok=True)
        try:
            _fetch(TEXT8_URL, zip_path, TEXT8_ZIP_SHA256)
        except (URLError, OSError) as exc:
            raise DataMissingError(f"text8 is not at {target} and could not be downloaded from {TEXT8_URL} "
                                   f"({type(exc).__name__}: {_one_line(exc)}): " + _text8_hint(target)) from exc
    elif _sha256_file(zip_path) != TEXT8_ZIP_SHA256:
        raise DataMissingError(f"{zip_path} is not the published text8.zip (sha256 differs): delete it and "
                               + _text8_hint(target))
    try:
        _extract_member(zip_path, "text8", target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataMissingError(f"{zip_path} has no readable member 'text8' ({_one_line(exc)}): delete it and "
                               + _text8_hint(target)) from exc
    _verify_text8(target)
    return target


# ----------------------------------------------------------------------------------------------------------------
# corpora: normalise, split, encode, cache
# ----------------------------------------------------------------------------------------------------------------


def split_sizes(n: int) -> dict[str, int]:
    """Contiguous 90 / 5 / 5 split of n tokens: valid = test = n // 20, train = the rest (text8: 90M, 5M, 5M)."""
    held_out = n // 20
    return {"train": n - 2 * held_out, "valid": held_out, "test": held_out}


def _canonical_split(split: str) -> str:
    key = _SPLIT_ALIASES.get(str(split).lower())
    if key is None:
        raise ConfigError(f"unknown text split {split!r}; valid splits: {', '.join(SPLITS)}")
    return key


@dataclass(frozen=True)
class Corpus:
    """A prepared corpus: ``folder`` holds ``{train,valid,test}.bin`` (uint8 token ids) and ``meta.json``."""

    folder: pathlib.Path
    sizes: dict[str, int]
    meta: dict = field(repr=False)

    def path(self, split: str) -> pathlib.Path:
        """The token file of ``split`` ("train", "valid" or "test")."""
        return self.folder / f"{_canonical_split(split)}.bin"

    def load(self, split: str) -> np.memmap:
        """The split as a read-only uint8 memmap (n,)."""
        return np.memmap(self.path(split), dtype=np.uint8, mode="r")


def _read_cache(folder: pathlib.Path, source_sha256: str) -> Corpus:
    """Validate and open an existing cache folder; anything unexpected is an error, never a rebuild."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        sizes = {s: int(meta["sizes"][s]) for s in SPLITS}
        ok = meta.get("version") == _CACHE_VERSION and meta.get("source_sha256") == source_sha256
        ok = ok and all((folder / f"{s}.bin").stat().st_size == sizes[s] for s in SPLITS)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(f"{folder} exists but is not a complete corpus cache for this source; delete that folder "
                          "and run again")
    return Corpus(folder, sizes, meta)


def _load_source_ids(path: pathlib.Path, normalize: bool | None) -> tuple[np.ndarray, bool]:
    """Token ids of a local text file, and whether it was normalised.

    ``normalize=None`` uses the file as is when every byte is already in the alphabet, else normalises it.
    """
    if path.suffix == ".gz":
        import gzip

        try:
            with gzip.open(path, "rb") as fh:
                raw = np.frombuffer(fh.read(), dtype=np.uint8)
        except (OSError, EOFError) as exc:
            raise DataMissingError(f"cannot decompress {path}: {_one_line(exc)}") from None
    else:
        raw = np.fromfile(path, dtype=np.uint8)
    in_alphabet = bool((_ENCODE_TABLE[raw] != 255).all())
    if normalize is False or (normalize is None and in_alphabet):
        return _encode_bytes(raw), False
    text = normalize_text(raw.tobytes().decode("utf-8", errors="replace"))
    return _encode_bytes(np.frombuffer(text.encode("ascii"), dtype=np.uint8)), True


def _shuffle_chunks(ids: np.ndarray, chunk: int, seed: int) -> np.ndarray:
    """Cut ``ids`` into consecutive chunks of ``chunk`` tokens (the last may be shorter) and reorder them by a
    ``numpy.random.RandomState(seed)`` permutation (a stream NumPy keeps fixed across versions)."""
    starts = np.arange(0, ids.size, chunk)
    order = np.random.RandomState(seed).permutation(starts.size)
    return np.concatenate([ids[s : s + chunk] for s in starts[order]]) if ids.size else ids


def prepare_corpus(source: str | os.PathLike, root: str | os.PathLike | None = None, *,
                   normalize: bool | None = None, shuffle_chunk: int | None = None, seed: int = 0,
                   download: bool = True) -> Corpus:
    """Encode ``source`` into cached split files and return the `Corpus` (reused if already prepared).

    Args:
        source: "text8" (downloaded by `download_text8`), or the path of a text file (UTF-8, or gzipped UTF-8 if
            its name ends in ``.gz``; a file literally named text8 in the working directory is reached as
            ``"./text8"``).
        root: data folder; default ``data_root()``. The cache is ``root/corpora/<key>/``.
        normalize: for a local file: None (default) uses it as is if it is already in the 27-symbol alphabet and
            applies `normalize_text` otherwise; True always normalises; False never does (and fails on a character
            outside the alphabet). text8 is used as is.
        shuffle_chunk: for a local file only: cut the token stream into chunks of this many characters and shuffle
            them with ``seed`` before splitting, so that valid / test are not just the end of the file (the last
            book of a collection, an appendix). Seams between chunks join words that were not adjacent, so use
            large chunks (e.g. 10,000). Default None: a contiguous split like text8's.
        seed: the chunk-shuffling seed.
        download: allow downloading text8.

    Returns:
        A `Corpus` whose ``load(split)`` gives a uint8 memmap and ``sizes`` the split lengths (90 / 5 / 5, see
        `split_sizes`).
    """
    base = pathlib.Path(root).expanduser() if root is not None else data_root()
    corpora = base / "corpora"
    is_text8 = isinstance(source, str) and source == "text8"
    if shuffle_chunk is not None and (isinstance(shuffle_chunk, bool) or int(shuffle_chunk) < 1):
        raise ConfigError(f"shuffle_chunk must be a positive int or None, got {shuffle_chunk!r}")

    if is_text8:
        if shuffle_chunk is not None or normalize:
            raise ConfigError("text8 uses its standard contiguous split and is already normalised: drop "
                              "shuffle_chunk / normalize")
        folder = corpora / "text8"
        if folder.exists():
            return _read_cache(folder, TEXT8_SHA256)
        src_path = download_text8(base, download=download)
        source_sha256, stem = TEXT8_SHA256, "text8"
    else:
        src_path = pathlib.Path(source).expanduser()
        if not src_path.is_file():
            raise DataMissingError(f"text corpus {src_path} does not exist (pass 'text8' or the path of a text file)")
        source_sha256 = _sha256_file(src_path)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", src_path.stem) or "corpus"
        stem = f"{stem}-{source_sha256[:12]}"
        if normalize is not None:
            stem += "-norm" if normalize else "-raw"
        if shuffle_chunk is not None:
            stem += f"-shuffle{int(shuffle_chunk)}-seed{int(seed)}"
        folder = corpora / stem
        if folder.exists():
            return _read_cache(folder, source_sha256)

    if is_text8:
        ids, normalised = _encode_bytes(np.fromfile(src_path, dtype=np.uint8)), False
    else:
        ids, normalised = _load_source_ids(src_path, normalize)
        if shuffle_chunk is not None:
            ids = _shuffle_chunks(ids, int(shuffle_chunk), int(seed))
    sizes = split_sizes(ids.size)
    if min(sizes.values()) == 0:
        raise ConfigError(f"{src_path} has {ids.size} characters after normalisation; a corpus needs at least 20 "
                          "for a non-empty 90/5/5 split")

    meta = {
        "version": _CACHE_VERSION,
        "source": "text8" if is_text8 else str(src_path.resolve()),
        "source_sha256": source_sha256,
        "normalized": normalised,
        "shuffle_chunk": None if shuffle_chunk is None else int(shuffle_chunk),
        "seed": int(seed) if shuffle_chunk is not None else None,
        "sizes": sizes,
        "alphabet": ALPHABET,
        "format": "uint8 token ids: space=0, a..z=1..26 (mask id 27 is never stored)",
        "split": "contiguous: train = first n - 2 (n // 20), valid = next n // 20, test = last n // 20",
    }
    corpora.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=corpora, prefix=f".{folder.name}.", suffix=".part"))
    try:
        start = 0
        for name in SPLITS:
            ids[start : start + sizes[name]].tofile(tmp / f"{name}.bin")
            start += sizes[name]
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private (0700); the cache is an ordinary folder
        try:
            os.rename(tmp, folder)  # atomic; fails if another process created the folder meanwhile
        except OSError:
            if not folder.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _read_cache(folder, source_sha256)


def load_split(source: str | os.PathLike, split: str, root: str | os.PathLike | None = None, **kwargs) -> np.memmap:
    """One split ("train", "valid" or "test") of a prepared corpus as a read-only uint8 memmap (n,); prepares the
    corpus first if needed (``kwargs`` go to `prepare_corpus`)."""
    split = _canonical_split(split)
    return prepare_corpus(source, root, **kwargs).load(split)


def spread_windows(tokens, seq_len: int, n: int) -> torch.Tensor:
    """``n`` windows of ``seq_len`` tokens spread evenly over ``tokens`` (so a shuffled corpus is sampled across
    all its chunks, not just the first), int64 (n, L)."""
    arr = _as_token_array(tokens)
    if arr.size < seq_len:
        raise ConfigError(f"{arr.size} characters are fewer than one window of {seq_len}")
    starts = np.linspace(0, arr.size - seq_len, n).astype(np.int64)
    return torch.from_numpy(np.stack([arr[s: s + seq_len] for s in starts]).astype(np.int64))  # (n, L)


# ----------------------------------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------------------------------


def _as_token_array(tokens) -> np.ndarray:
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    arr = np.asarray(tokens) if not isinstance(tokens, np.ndarray) else tokens
    if arr.ndim != 1:
        raise ShapeError(f"tokens must be a 1-D sequence, got shape {arr.shape}")
    return arr


class ChunkSampler:
    """Random training windows: ``sampler(generator, n)`` -> int64 tensor (n, L) of ``tokens[o : o + L]`` for n
    offsets o drawn uniformly from 0..N-L with ``generator``.

    The batch is a function of the generator state only (no hidden sampler state), which is what makes a resumed
    training run exact (`dlcourse.train.fit` seeds the generator from the step). The tensor is on the CPU; the
    training loop moves it to its device.
    """

    def __init__(self, tokens, seq_len: int):
        self.tokens = _as_token_array(tokens)
        if seq_len < 1:
            raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
        if self.tokens.size < seq_len:
            raise ConfigError(f"a window of {seq_len} tokens does not fit in {self.tokens.size} tokens")
        self.seq_len = int(seq_len)

    @property
    def num_offsets(self) -> int:
        """How many distinct windows there are (n - L + 1)."""
        return self.tokens.size - self.seq_len + 1

    def sample_offsets(self, generator: torch.Generator | None, n: int) -> torch.Tensor:
        """``n`` window starts, int64 (n,) on the CPU, drawn with ``generator`` (on its device)."""
        if n < 1:
            raise ConfigError(f"a batch needs at least one window, got {n}")
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randint(self.num_offsets, (n,), generator=generator, device=device).cpu()

    def __call__(self, generator: torch.Generator | None, n: int) -> torch.Tensor:
        offsets = self.sample_offsets(generator, n).tolist()
        batch = np.stack([self.tokens[o : o + self.seq_len] for o in offsets])  # (B, L)
        return torch.from_numpy(batch.astype(np.int64))  # (B, L)


def iter_chunks(tokens, seq_len: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Non-overlapping windows in order, for evaluation: chunk i is ``tokens[i L : (i + 1) L]`` for
    i < n // L, yielded in int64 batches (b, L) with b = batch_size except possibly the last. The final
    n mod L tokens (fewer than one window) are not yielded."""
    arr = _as_token_array(tokens)
    if seq_len < 1 or batch_size < 1:
        raise ConfigError(f"seq_len and batch_size must be >= 1, got {seq_len} and {batch_size}")
    n_chunks = arr.size // seq_len
    for first in range(0, n_chunks, batch_size):
        last = min(first + batch_size, n_chunks)
        block = np.asarray(arr[first * seq_len : last * seq_len])
        yield torch.from_numpy(block.reshape(last - first, seq_len).astype(np.int64))  # (b, L)
