"""Where datasets live on disk.

One function, so that every loader (images, text8, local corpora) agrees on the folder and a user moves all of
them with one environment variable. Nothing is created on import: a folder appears only when a loader writes to it.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["data_root", "DATA_ENV"]

DATA_ENV = "DLCOURSE_DATA"


def data_root() -> pathlib.Path:
    """The dataset folder: ``$DLCOURSE_DATA`` if set, else ``$XDG_CACHE_HOME/dlcourse/data``, else
    ``~/.cache/dlcourse/data``.

    The folder is not created here (loaders create what they write).
    """
    explicit = os.environ.get(DATA_ENV, "").strip()
    if explicit:
        return pathlib.Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = pathlib.Path(cache).expanduser() if cache else pathlib.Path.home() / ".cache"
    return base / "dlcourse" / "data"
