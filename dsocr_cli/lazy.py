"""Heavy third-party modules bound at import time but loaded on first use.

Rule: a module that only some runs need (PyMuPDF, NumPy, markdownify with BeautifulSoup) is bound with
``lazy_module`` where dsocr imports it at module level, so a run that fails on its inputs, or never opens a PDF,
never pays for loading it (about 0.4 s of the CLI's start). The first attribute read imports the real module,
under a lock because pages are rendered on a prefetch thread; ``sys.modules`` only ever holds the real module.
Module-level code must not read such a module's attributes, or the load happens at import after all.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    """Stands for the module named ``name`` and forwards every attribute to it, importing it on first use."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lazy_lock = threading.Lock()
        self._lazy_real: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:  # only called for what the stand-in itself lacks
        real = self._lazy_real
        if real is None:
            with self._lazy_lock:
                if self._lazy_real is None:
                    self._lazy_real = importlib.import_module(self.__name__)
                real = self._lazy_real
        return getattr(real, attribute)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__name__))


def lazy_module(name: str) -> ModuleType:
    """A stand-in for module ``name`` that imports it when one of its attributes is first read."""
    return _LazyModule(name)
