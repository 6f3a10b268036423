"""Analysis parameters travel to the workers as a plain dictionary, and back.

``AnalyzeParams.to_dict()`` writes the dictionary; :func:`params_from_dict` rebuilds the
nested dataclasses from it (or from the ``parameters`` of a ``summary.json``), refusing
entries another napari-gbm version wrote.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from napari_gbm.io import _json_default
from napari_gbm.pipeline import AnalyzeParams

__all__ = ["params_from_dict"]


def params_from_dict(data: Mapping[str, Any]) -> AnalyzeParams:
    """The :class:`~napari_gbm.pipeline.AnalyzeParams` a dictionary describes.

    Parameters
    ----------
    data : mapping
        What ``AnalyzeParams.to_dict()`` wrote, or the ``parameters`` of a
        ``summary.json`` (which holds a few derived entries more, ignored here).

    Returns
    -------
    AnalyzeParams

    Raises
    ------
    ValueError
        For an unknown key (at any depth): it means another napari-gbm version.
    """
    derived = ("tiling_grid", "tissue_summary", "stain_vectors")
    return _from_dict(
        AnalyzeParams, {k: v for k, v in data.items() if k not in derived}, "parameters"
    )


def _from_dict(cls: Any, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"unknown {where} entries {', '.join(unknown)}: written by another napari-gbm version?"
        )
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        options = typing.get_args(hint) if union else (hint,)
        sub = next((t for t in options if is_dataclass(t)), None)
        if sub is not None and isinstance(value, Mapping):
            value = _from_dict(sub, value, f"{where}.{f.name}")
        elif isinstance(value, list) and any(typing.get_origin(t) is tuple for t in options):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(obj, default=_json_default))
