"""Save and load fitted survival models safely: tensors in ``model.pt``, the rest in JSON.

A saved model is two files side by side:

- ``model.pt``: a ``dict[str, Tensor]`` of weights written with ``torch.save`` and read
  back with ``torch.load(..., weights_only=True)``, so loading never unpickles arbitrary
  objects (a pickle that would run code is refused with a ValueError, and its code does
  not run);
- ``model.json``: the model type, hyperparameters, feature names, feature scaling,
  training metrics, the napari-gbm and torch versions that wrote it, and the SHA-256 of
  ``model.pt`` (a model.pt that does not belong to this model.json, e.g. after an
  interrupted save or files mixed from two models, is refused).

Both are written atomically (temporary file, then rename; ``napari_gbm.io.atomic_path``).

Protocol: a model class has a ``model_name``, ``get_state() -> (tensors, meta)`` with
``meta["model"]`` naming it, and ``from_state(tensors, meta)`` (a classmethod). Known
names: ``"mlp_cox"`` (:class:`~napari_gbm.survival.nn.MLPCoxModel`),
``"attention_mil_cox"`` (:class:`~napari_gbm.survival.mil.AttentionMILCoxModel`) and
``"cox"`` (``napari_gbm.survival.cox.CoxModel``, imported only when such a file is loaded).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from napari_gbm import __version__
from napari_gbm.io import atomic_path, write_json

__all__ = ["FORMAT_VERSION", "META_FILE", "MODEL_FILE", "load_model", "save_model"]

MODEL_FILE = "model.pt"
META_FILE = "model.json"
FORMAT = "napari-gbm survival model"
FORMAT_VERSION = 1

# model name -> (module, class); imported when needed
_REGISTRY = {
    "mlp_cox": ("napari_gbm.survival.nn", "MLPCoxModel"),
    "attention_mil_cox": ("napari_gbm.survival.mil", "AttentionMILCoxModel"),
    "cox": ("napari_gbm.survival.cox", "CoxModel"),
}


def _paths(folder_or_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(model.pt, model.json): a folder holds both; a path ending in .pt or .json names
    one of a pair with the same stem."""
    p = Path(folder_or_path)
    if p.suffix.lower() in (".pt", ".json"):
        return p.with_suffix(".pt"), p.with_suffix(".json")
    return p / MODEL_FILE, p / META_FILE


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_tensors(tensors: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise ValueError(f"{where} must be a dict of str to torch.Tensor")
    return tensors


def save_model(model: Any, folder_or_path: str | os.PathLike[str]) -> Path:
    """Save a fitted model as ``model.pt`` + ``model.json``.

    Parameters
    ----------
    model : object
        Any fitted model implementing ``get_state()`` (see the module docstring).
    folder_or_path : str or os.PathLike
        A folder (created if needed; the files are ``model.pt`` and ``model.json`` in it)
        or a path ending in ``.pt`` or ``.json`` (the pair shares that stem).

    Returns
    -------
    pathlib.Path
        The JSON file written.

    Raises
    ------
    ValueError
        If the model has no ``get_state()``, its tensors are not a dict of str to tensor,
        or its metadata names no known model type.
    """
    if not hasattr(model, "get_state"):
        raise ValueError(f"{type(model).__name__} cannot be saved: it has no get_state() method")
    tensors, meta = model.get_state()
    tensors = _check_tensors(tensors, f"{type(model).__name__}.get_state() tensors")
    if not isinstance(meta, dict) or meta.get("model") not in _REGISTRY:
        raise ValueError(
            f"{type(model).__name__}.get_state() metadata must name a known model "
            f"(one of {sorted(_REGISTRY)}) under 'model'"
        )
    pt_path, json_path = _paths(folder_or_path)
    cpu = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(pt_path) as tmp:
        torch.save(cpu, tmp)
        digest = _sha256(tmp)
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **meta,
        "napari_gbm_version": __version__,
        "torch_version": torch.__version__,
        "saved_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "weights_file": pt_path.name,
        "weights_sha256": digest,
    }
    return write_json(full, json_path)


def _load_class(name: str) -> Any:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model type {name!r} in model.json; known: {sorted(_REGISTRY)}")
    module_name, cls_name = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"model type {name!r} needs {module_name}, which cannot be imported: {exc}"
        ) from exc
    cls = getattr(module, cls_name, None)
    if cls is None or not hasattr(cls, "from_state"):
        raise ValueError(f"{module_name}.{cls_name} does not implement from_state()")
    return cls


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or os.PathLike
        The folder, or its ``.pt`` or ``.json`` file.

    Returns
    -------
    object
        The model, rebuilt by its class's ``from_state`` (e.g.
        :class:`~napari_gbm.survival.nn.MLPCoxModel`), on the CPU.

    Raises
    ------
    FileNotFoundError
        If either file is missing.
    ValueError
        If ``model.pt`` holds anything but tensors (a pickle of other objects is never
        executed), does not match the checksum in ``model.json``, or the metadata is
        not a napari-gbm model description (or comes from a newer format version).

    Warns
    -----
    UserWarning
        When the file was written by another napari-gbm version.
    """
    pt_path, json_path = _paths(path)
    for p in (json_path, pt_path):
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p} (save_model writes both)")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{json_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{json_path} is not a napari-gbm survival model description")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{json_path} has format version {meta.get('format_version')}; this napari-gbm "
            f"reads up to {FORMAT_VERSION}: upgrade napari-gbm"
        )
    cls = _load_class(str(meta.get("model")))
    digest = _sha256(pt_path)
    if digest != meta.get("weights_sha256"):
        raise ValueError(
            f"{pt_path} does not match {json_path.name} (checksum differs): the pair was "
            "not written together by save_model, or a file was modified or cut"
        )
    try:
        tensors = torch.load(pt_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"refusing to load {pt_path}: it holds pickled objects other than tensors, which "
            "could run code. Only files written by save_model (tensors only) are loaded."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{pt_path} is not a readable model file: {exc}") from exc
    tensors = _check_tensors(tensors, f"{pt_path} content")
    saved = meta.get("napari_gbm_version")
    if saved != __version__:
        warnings.warn(
            f"{json_path} was saved by napari-gbm {saved}, this is {__version__}; "
            "predictions may differ. Re-fit and save the model with this version to be sure.",
            UserWarning,
            stacklevel=2,
        )
    try:
        return cls.from_state(tensors, meta)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{json_path} lacks or mangles a field the model needs: {exc}") from exc
