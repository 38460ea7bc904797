"""Progress bars: a widget in Jupyter and text on a terminal (``tqdm.auto``), or text in the notebooks that
``cddpm demo`` runs (``CDDPM_PROGRESS=text``), whose stderr the demo shows on its own terminal as they run."""
from __future__ import annotations

import os

from tqdm.auto import tqdm as _auto
from tqdm.std import tqdm as _text

ENV = "CDDPM_PROGRESS"
TEXT = os.environ.get(ENV) == "text"
tqdm = _text if TEXT else _auto
TERMINAL_ONLY = False if TEXT else None  # ``disable=`` of a bar shown on a terminal only (tqdm's None), or to the demo
