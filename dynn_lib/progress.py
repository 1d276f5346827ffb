"""Progress bars: tqdm.auto everywhere, silenced with DYNN_PROGRESS=0 (CI logs stay short)."""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(it: Iterable[T], **kw) -> Iterable[T]:
    """Wrap an iterable in a tqdm.auto bar unless ``DYNN_PROGRESS=0``."""
    disable = os.environ.get("DYNN_PROGRESS", "1") == "0"
    return tqdm(it, disable=disable, **kw)
