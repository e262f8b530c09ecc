"""Tests for dlcourse.data.text, offline: synthetic corpora written here, the network replaced by fakes."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
import zipfile
from urllib.error import URLError

import numpy as np
import pytest
import torch

from dlcourse.data import text
from dlcourse.data.text import (
    ALPHABET,
    MASK_ID,
    VOCAB_SIZE,
    ChunkSampler,
    TextEncodingError,
    decode,
    download_text8,
    encode,
    iter_chunks,
    load_split,
    normalize_text,
    prepare_corpus,
)
from dlcourse.errors import ConfigError, DataMissingError


def _random_text(n: int, seed: int = 0) -> str:
    """n characters over the 27-symbol alphabet."""
    rng = np.random.default_rng(seed)
    return "".join(ALPHABET[i] for i in rng.integers(0, VOCAB_SIZE, size=n))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ---------------------------------------------------------------------------------------------------------------
# normalisation and vocabulary
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, World!", "hello world"),
        ("In 1984 there were 2 of them.", "in one nine eight four there were two of them"),
        ("x1y", "x one y"),
        ("  many   spaces\t\tand\nnew\r\nlines  ", "many spaces and new lines"),
        ("ALL CAPS and MiXeD", "all caps and mixed"),
        ("Café naïve Straße, 東京!", "caf na ve stra e"),  # non-ASCII letters are not a-z: they become spaces
        ("don't stop-me", "don t stop me"),
        ("", ""),
        ("!!! ... ???", ""),
        ("0", "zero"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected  # idempotent


def test_vocabulary_convention():
    assert VOCAB_SIZE == 27 and MASK_ID == 27 and len(ALPHABET) == 27
    assert ALPHABET[0] == " " and ALPHABET[1:] == "abcdefghijklmnopqrstuvwxyz"
    assert encode(" az").tolist() == [0, 1, 26]
    assert decode([MASK_ID, 1, 0, 2]) == "_a b"


def test_encode_decode_round_trip():
    s = _random_text(500)
    ids = encode(s)
    assert ids.dtype == np.uint8 and ids.shape == (500,) and ids.max() < VOCAB_SIZE
    assert decode(ids) == s
    t = encode(s, return_tensor=True)
    assert t.dtype == torch.int64 and decode(t) == s
    batch = torch.stack([t[:10], t[10:20]])  # (2, 10)
    assert decode(batch) == [s[:10], s[10:20]]
    assert decode(encode(normalize_text("The year 2000!"))) == "the year two zero zero zero"


@pytest.mark.parametrize("bad, char, pos", [("hello World", "W", 6), ("caf\u00e9", "\u00e9", 3), ("a,b", ",", 1)])
def test_encode_bad_character(bad, char, pos):
    with pytest.raises(TextEncodingError) as err:
        encode(bad)
    msg = str(err.value)
    assert repr(char) in msg and f"position {pos}" in msg and "normalize_text" in msg
    assert isinstance(err.value, ValueError)


def test_decode_bad_ids():
    with pytest.raises(TextEncodingError):
        decode([0, 28])
    with pytest.raises(TextEncodingError):
        decode(np.array([-1, 2]))


# ---------------------------------------------------------------------------------------------------------------
# corpora
# ---------------------------------------------------------------------------------------------------------------


def test_prepare_corpus_split_sizes_and_contents(tmp_path):
    corpus_text = _random_text(4000, seed=1)
    src = tmp_path / "corpus.txt"
    src.write_text(corpus_text)
    root = tmp_path / "data"
    corpus = prepare_corpus(src, root=root)
    assert corpus.sizes == {"train": 3600, "valid": 200, "test": 200}
    ids = encode(corpus_text)
    train, valid, test = (corpus.load(s) for s in ("train", "valid", "test"))
    assert isinstance(train, np.memmap) and train.dtype == np.uint8
    np.testing.assert_array_equal(train, ids[:3600])
    np.testing.assert_array_equal(valid, ids[3600:3800])
    np.testing.assert_array_equal(test, ids[3800:])
    meta = json.loads((corpus.folder / "meta.json").read_text())
    assert meta["source_sha256"] == hashlib.sha256(corpus_text.encode()).hexdigest()
    assert meta["sizes"] == corpus.sizes and meta["normalized"] is False
    assert corpus.folder.parent == root / "corpora"
    # second call reuses the cache without rewriting it; load_split agrees
    before = {p.name: p.stat().st_mtime_ns for p in corpus.folder.iterdir()}
    again = prepare_corpus(src, root=root)
    assert again.folder == corpus.folder
    assert {p.name: p.stat().st_mtime_ns for p in corpus.folder.iterdir()} == before
    np.testing.assert_array_equal(load_split(src, "val", root=root), valid)
    assert not [p for p in (root / "corpora").iterdir() if p.name.startswith(".")]  # no temp folders left


def test_prepare_corpus_normalises_raw_text(tmp_path, monkeypatch):
    raw = "Chapter 1.\n\nIt was the BEST of times; it was the worst of times!\n" * 20
    src = tmp_path / "book.txt"
    src.write_text(raw)
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path / "env-root"))
    corpus = prepare_corpus(src)
    assert corpus.folder.parent == tmp_path / "env-root" / "corpora"
    joined = np.concatenate([corpus.load(s) for s in ("train", "valid", "test")])
    assert decode(joined) == normalize_text(raw)
    assert corpus.meta["normalized"] is True
    with pytest.raises(TextEncodingError):
        prepare_corpus(src, normalize=False)


def test_shuffled_chunks_split(tmp_path):
    corpus_text = _random_text(2000, seed=2)
    src = tmp_path / "c.txt"
    src.write_text(corpus_text)
    plain = prepare_corpus(src, root=tmp_path)
    shuffled = prepare_corpus(src, root=tmp_path, shuffle_chunk=100, seed=3)
    assert shuffled.folder != plain.folder and shuffled.sizes == plain.sizes
    joined = np.concatenate([shuffled.load(s) for s in ("train", "valid", "test")])
    chunks = [corpus_text[i : i + 100] for i in range(0, 2000, 100)]
    got = [decode(joined[i : i + 100]) for i in range(0, 2000, 100)]
    assert sorted(got) == sorted(chunks) and got != chunks  # a permutation of the chunks, not the identity
    same = prepare_corpus(src, root=tmp_path, shuffle_chunk=100, seed=3)
    assert same.folder == shuffled.folder


def test_never_overwrites_a_foreign_cache_folder(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text(_random_text(400))
    corpus = prepare_corpus(src, root=tmp_path)
    (corpus.folder / "meta.json").unlink()
    (corpus.folder / "train.bin").write_bytes(b"mine")
    with pytest.raises(ConfigError) as err:
        prepare_corpus(src, root=tmp_path)
    assert str(corpus.folder) in str(err.value)
    assert (corpus.folder / "train.bin").read_bytes() == b"mine"


def test_tiny_or_missing_corpus(tmp_path):
    src = tmp_path / "tiny.txt"
    src.write_text("too short")
    with pytest.raises(ConfigError):
        prepare_corpus(src, root=tmp_path)
    with pytest.raises(DataMissingError):
        prepare_corpus(tmp_path / "nope.txt", root=tmp_path)
    with pytest.raises(ConfigError):
        load_split(src, "dev", root=tmp_path)


def test_named_prose_corpus(tmp_path, monkeypatch):
    """``data="english-prose"`` finds the corpus in the data root, checks that it is the same text, and says how to
    build it when it is missing or different (a stand-in text with its sha256 patched in plays the real corpus)."""
    import gzip

    from dlcourse.discrete.config import TextConfig
    from dlcourse.discrete.data import text_split

    from dlcourse.registry import family

    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    cfg = TextConfig(kind="ar", data="english-prose", shuffle_chunk=100)
    for find in (lambda: text_split(cfg, "train"), lambda: family("ar").train_data(cfg)):  # what `train` calls
        with pytest.raises(DataMissingError) as err:
            find()
        msg = str(err.value)
        assert "\n" not in msg and "README 'Data'" in msg and str(tmp_path / text.PROSE_FILE) in msg

    body = _random_text(2000, seed=5).encode()
    (tmp_path / text.PROSE_FILE).write_bytes(gzip.compress(body))
    with pytest.raises(DataMissingError, match="is not the english-prose text"):
        text_split(cfg, "train")
    monkeypatch.setattr(text, "PROSE_SHA256", hashlib.sha256(body).hexdigest())
    train = text_split(cfg, "train")
    same = load_split(tmp_path / text.PROSE_FILE, "train", shuffle_chunk=100)
    assert np.array_equal(np.asarray(train), np.asarray(same)) and train.size == 1800
    batch = family("ar").train_data(cfg)(torch.Generator().manual_seed(0), 4)  # the training loop's batches
    assert batch.shape == (4, cfg.seq_len)
    _, about = family("ar").describe(cfg, family("ar").build_model(cfg))  # what an export records in the manifest
    assert about.startswith(text.PROSE_ABOUT) and "README 'Data'" in about

    (tmp_path / text.PROSE_FILE).write_bytes(b"not gzip")
    with pytest.raises(DataMissingError, match="cannot decompress"):
        text_split(cfg, "valid")


# ---------------------------------------------------------------------------------------------------------------
# text8
# ---------------------------------------------------------------------------------------------------------------


def test_text8_missing_without_network(tmp_path, no_network):
    with pytest.raises(DataMissingError) as err:
        download_text8(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert text.TEXT8_URL in msg and str(tmp_path / "text8" / "text8") in msg
    assert not list((tmp_path / "text8").glob("*"))  # no partial download left behind
    with pytest.raises(DataMissingError) as err:
        load_split("text8", "train", root=tmp_path)
    assert text.TEXT8_URL in str(err.value)
    with pytest.raises(DataMissingError):
        download_text8(tmp_path / "other", download=False)


def _fake_text8(monkeypatch, content: bytes, zip_sha: str | None = None):
    """Serve a small zip in place of text8.zip and point the published checksums at it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("text8", content)
    payload = buf.getvalue()
    calls = []

    def fake_urlopen(url, *args, **kwargs):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(text, "TEXT8_CHARS", len(content))
    monkeypatch.setattr(text, "TEXT8_SHA256", hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(text, "TEXT8_ZIP_SHA256", zip_sha or hashlib.sha256(payload).hexdigest())
    return calls


def test_text8_download_verify_and_split(tmp_path, monkeypatch):
    content = (" " + _random_text(1999, seed=4)).encode()
    calls = _fake_text8(monkeypatch, content)
    path = download_text8(tmp_path)
    assert path == tmp_path / "text8" / "text8" and path.read_bytes() == content
    assert calls == [text.TEXT8_URL]
    corpus = prepare_corpus("text8", root=tmp_path)
    assert corpus.sizes == {"train": 1800, "valid": 100, "test": 100}  # 90 / 5 / 5 as for the real 100M
    np.testing.assert_array_equal(load_split("text8", "test", root=tmp_path), encode(content[1900:]))
    assert calls == [text.TEXT8_URL]  # everything after the first call came from disk


def test_text8_checksum_mismatch(tmp_path, monkeypatch):
    _fake_text8(monkeypatch, _random_text(100).encode(), zip_sha="0" * 64)
    with pytest.raises(DataMissingError) as err:
        download_text8(tmp_path)
    assert "sha256" in str(err.value)
    assert not list((tmp_path / "text8").glob("*"))
    # a wrong file already at the target is reported, not replaced
    monkeypatch.setattr(text, "TEXT8_ZIP_SHA256", "0" * 64)
    (tmp_path / "text8" / "text8").write_bytes(b"not text8")
    with pytest.raises(DataMissingError):
        download_text8(tmp_path)
    assert (tmp_path / "text8" / "text8").read_bytes() == b"not text8"


# ---------------------------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def token_memmap(tmp_path):
    ids = encode(_random_text(1003, seed=5))
    path = tmp_path / "tokens.bin"
    ids.tofile(path)
    return np.memmap(path, dtype=np.uint8, mode="r")


def test_chunk_sampler_determinism_and_content(token_memmap):
    sampler = ChunkSampler(token_memmap, seq_len=16)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    batch = sampler(g, 8)
    assert batch.shape == (8, 16) and batch.dtype == torch.int64
    offsets = sampler.sample_offsets(torch.Generator().set_state(state), 8)
    for row, o in zip(batch, offsets.tolist()):
        np.testing.assert_array_equal(row.numpy(), token_memmap[o : o + 16])
    again = sampler(torch.Generator().set_state(state), 8)
    assert torch.equal(batch, again)  # same generator state, same batch
    assert not torch.equal(sampler(g, 8), batch)  # the generator moved on
    # every window start is reachable and none runs past the end
    many = ChunkSampler(token_memmap, seq_len=1000).sample_offsets(torch.Generator().manual_seed(1), 400)
    assert many.min() >= 0 and many.max() <= 3 and set(many.tolist()) == {0, 1, 2, 3}


def test_chunk_sampler_errors(token_memmap):
    with pytest.raises(ConfigError):
        ChunkSampler(token_memmap, seq_len=2000)
    with pytest.raises(ConfigError):
        ChunkSampler(token_memmap, seq_len=0)
    with pytest.raises(ConfigError):
        ChunkSampler(token_memmap, seq_len=16)(torch.Generator(), 0)


def test_iter_chunks_covers_split(token_memmap):
    batches = list(iter_chunks(token_memmap, seq_len=10, batch_size=32))
    assert [b.shape[0] for b in batches] == [32, 32, 32, 4]  # 100 windows of 10; the last 3 tokens are left out
    assert all(b.shape[1] == 10 and b.dtype == torch.int64 for b in batches)
    joined = torch.cat(batches).flatten().numpy()
    np.testing.assert_array_equal(joined, token_memmap[:1000])
    exact = list(iter_chunks(token_memmap[:1000], seq_len=10, batch_size=100))
    assert len(exact) == 1 and torch.equal(exact[0].flatten(), torch.from_numpy(token_memmap[:1000].astype(np.int64)))
