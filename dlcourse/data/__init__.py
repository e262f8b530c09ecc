"""Datasets for the course: 2-D toys with exact scores, image sets as tensors, character-level text.

- `toy2d`: ``get_toy(name)`` and the classes behind it (`GaussianMixture` with exact perturbed scores,
  `Checkerboard`, `Rings`, `SwissRoll`, `Moons`).
- `images`: ``load_images(name, split)`` -> float32 (N, C, H, W) in [0, 1], int64 labels.
- `text`: text8-style normalisation, the 27-symbol vocabulary (+ mask id 27), cached corpora and batch samplers.
- `paths`: ``data_root()``, the folder every loader uses (``$DLCOURSE_DATA``).
"""

from .images import IMAGE_DATASETS, IMAGE_SHAPES, from_model_range, load_images, to_model_range
from .paths import data_root
from .text import (
    ALPHABET,
    MASK_ID,
    SPLITS,
    VOCAB_SIZE,
    ChunkSampler,
    Corpus,
    TextEncodingError,
    decode,
    download_text8,
    encode,
    iter_chunks,
    load_split,
    normalize_text,
    prepare_corpus,
    split_sizes,
)
from .toy2d import (
    TOY_DISTRIBUTIONS,
    Checkerboard,
    GaussianMixture,
    Moons,
    Rings,
    SwissRoll,
    ToyDistribution,
    eight_gaussians,
    get_toy,
    grid_gaussians,
    toy_names,
    two_gaussians,
)

__all__ = [
    "data_root",
    # toy2d
    "ToyDistribution",
    "GaussianMixture",
    "Checkerboard",
    "Rings",
    "SwissRoll",
    "Moons",
    "two_gaussians",
    "eight_gaussians",
    "grid_gaussians",
    "TOY_DISTRIBUTIONS",
    "get_toy",
    "toy_names",
    # images
    "IMAGE_SHAPES",
    "IMAGE_DATASETS",
    "load_images",
    "to_model_range",
    "from_model_range",
    # text
    "ALPHABET",
    "VOCAB_SIZE",
    "MASK_ID",
    "SPLITS",
    "TextEncodingError",
    "normalize_text",
    "encode",
    "decode",
    "download_text8",
    "Corpus",
    "prepare_corpus",
    "load_split",
    "split_sizes",
    "ChunkSampler",
    "iter_chunks",
]
