"""The data of the text families: synthetic sources with a known entropy ("markov", "topics") and text corpora
("text8", "english-prose" or a file, prepared by `dlcourse.data.text.prepare_corpus`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.text import PROSE_NAME, load_split, prose_corpus_path, spread_windows
from .config import TextConfig
from .markov import MarkovChain

__all__ = ["SYNTHETIC", "NAMED", "markov_chain", "synthetic_source", "text_split", "eval_windows"]

SYNTHETIC = ("markov", "topics")
NAMED = (*SYNTHETIC, "text8", PROSE_NAME)  #: the data a config may name; anything else must be a text file


def markov_chain(cfg: TextConfig) -> MarkovChain:
    """The synthetic chain of a ``data="markov"`` config."""
    return MarkovChain.random(cfg.markov_symbols, cfg.markov_concentration, cfg.markov_seed)


def synthetic_source(cfg: TextConfig):
    """The source of a synthetic ``data`` ("markov" or "topics"): ``sample(n, L, generator)`` and
    ``window_entropy(L)`` (bits per character of a perfect model of L-character windows)."""
    if cfg.data == "markov":
        return markov_chain(cfg)
    from .testbed import TopicLanguage

    return TopicLanguage.random(seed=0)


def text_split(cfg: TextConfig, split: str):
    """The token ids (uint8 memmap) of ``split`` of ``cfg.data`` ("text8", "english-prose" or a text file, possibly
    ``.gz``), prepared by `dlcourse.data.text.prepare_corpus` (normalised like text8 if needed; see
    ``shuffle_chunk``). A file literally named like one of the two corpora is reached as "./name"."""
    if cfg.data == "text8":
        return load_split("text8", split)
    path = prose_corpus_path() if cfg.data == PROSE_NAME else Path(cfg.data).expanduser()
    return load_split(path, split, shuffle_chunk=cfg.shuffle_chunk or None)


def eval_windows(cfg: TextConfig, n: int | None = None, split: str = "valid") -> torch.Tensor:
    """Held-out windows (n, L): fresh chain samples (seed 12345), or n windows spread evenly over ``split``."""
    n = cfg.eval_windows if n is None else n
    if cfg.data in SYNTHETIC:
        return synthetic_source(cfg).sample(n, cfg.seq_len, torch.Generator().manual_seed(12345))
    return spread_windows(text_split(cfg, split), cfg.seq_len, n)
