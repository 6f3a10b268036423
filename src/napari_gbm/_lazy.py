"""The one lazy re-export used by every package module of napari-gbm.

A package lists its public names and the submodule that defines each; a name's module is
imported on first access, so ``import napari_gbm`` (or ``napari_gbm.survival``) loads neither
numba, torch nor matplotlib until something that needs them is used. This is the pattern of
SPEC 1 (scientific-python.org/specs/spec-0001) written in a dozen lines instead of a
dependency; type checkers see the names through each package's ``TYPE_CHECKING`` block.

Usage, in a package's ``__init__.py``::

    __getattr__, __dir__, __all__ = attach(__name__, {"Slide": "wsi.slide", ...})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def attach(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Lazy ``__getattr__``, ``__dir__`` and ``__all__`` for a package.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict of str to str
        Public name -> submodule path relative to the package (``"wsi.slide"``).

    Returns
    -------
    getattr_, dir_, all_ : callable, callable, list of str
        To assign to the package's ``__getattr__``, ``__dir__`` and ``__all__``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, sorted(exports)
