"""What the torch survival models share: input checks, standardisation, the training loop.

:class:`~napari_gbm.survival.nn.MLPCoxModel` and
:class:`~napari_gbm.survival.mil.AttentionMILCoxModel` differ only in their network and
in how a batch of samples becomes the network's input. Everything else lives here once:

- the input checks (:func:`as_feature_matrix`, :func:`check_time_event`) and the
  standardisation of features (:func:`standardise`);
- :func:`train_cox`: full-batch Adam on the Cox partial likelihood
  (:func:`napari_gbm.survival._loss.cox_partial_nll`) plus an L2 penalty on the weight
  matrices, with optional early stopping on an event-stratified held-out part;
- :class:`TorchCoxModel`, the base class holding the shared hyperparameters, the seeded
  fit (:meth:`TorchCoxModel._fit_network`) and the persistence protocol's common parts.

Determinism: :meth:`TorchCoxModel._fit_network` seeds torch's generator inside a forked
RNG state, so a given ``seed`` gives the same model (CPU) and the caller's global RNG is
left untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._loss import TIES, cox_partial_nll
from ._validate import check_survival

__all__ = [
    "DTYPE",
    "TorchCoxModel",
    "as_feature_matrix",
    "check_hyperparameters",
    "check_time_event",
    "load_weights",
    "standardise",
    "train_cox",
]

DTYPE = torch.float32

Net = TypeVar("Net", bound=nn.Module)
#: a function of the sample indices that returns ``network -> risks of those samples``
ForwardFactory = Callable[[torch.Tensor], Callable[[nn.Module], torch.Tensor]]


def as_feature_matrix(
    X: Any, what: str = "X", feature_names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """A finite float64 (n, d) matrix and its column names from a DataFrame or array.

    Parameters
    ----------
    X : DataFrame or array-like
        Samples x features.
    what : str
        How messages name ``X`` ("bag 3", "covariates").
    feature_names : sequence of str, optional
        The columns of a fitted model: a DataFrame is reordered to them (a missing column
        is an error) and an array must have that many columns.

    Returns
    -------
    arr : ndarray of float64, shape (n, d)
    names : list of str
        The DataFrame's columns, ``feature_names``, or ``x0, x1, ...``.

    Raises
    ------
    ValueError
        For non-numeric columns, a wrong shape or number of columns, NaN or infinite values.
    """
    if isinstance(X, pd.DataFrame):
        if feature_names is not None:
            missing = [c for c in feature_names if c not in X.columns]
            if missing:
                raise ValueError(
                    f"{what} lacks the model's feature columns {missing}; "
                    f"it was fitted on {list(feature_names)}"
                )
            X = X[list(feature_names)]
        names = [str(c) for c in X.columns]
        bad = [c for c in X.columns if not (is_numeric_or_bool(X[c]))]
        if bad:
            raise ValueError(
                f"{what} has non-numeric columns {[str(c) for c in bad]}; "
                "encode or drop them before fitting"
            )
        arr = X.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a numeric array or DataFrame") from None
        if arr.ndim == 1 and feature_names is not None and len(feature_names) == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{what} must be 2-D (samples x features), got shape {arr.shape}")
        names = (
            list(feature_names)
            if feature_names is not None
            else [f"x{i}" for i in range(arr.shape[1])]
        )
    if feature_names is not None and arr.shape[1] != len(feature_names):
        raise ValueError(
            f"{what} has {arr.shape[1]} features, the model was fitted on {len(feature_names)}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{what} has no feature columns")
    finite = np.isfinite(arr)
    if not finite.all():
        cols = sorted({names[j] for j in np.flatnonzero(~finite.all(axis=0))})
        rows = int((~finite.all(axis=1)).sum())
        raise ValueError(
            f"{what} has NaN or infinite values in {rows} row(s), columns {cols}; "
            "impute or drop them first"
        )
    return arr, names


def is_numeric_or_bool(col: pd.Series) -> bool:
    """Whether a column holds numbers or booleans (what a model can read as they are)."""
    return bool(pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def check_time_event(time: Any, event: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Follow-up times and events for ``n`` samples, with at least two events.

    Parameters
    ----------
    time : array-like
        Finite, > 0 (checked as everywhere in ``napari_gbm.survival``).
    event : array-like
        Bool or 0/1; True = event observed.
    n : int
        The number of samples they must describe.

    Returns
    -------
    time : ndarray of float64
    event : ndarray of bool
        Copies.
    """
    t, e = check_survival(time, event)
    if t.shape[0] != n:
        raise ValueError(f"time and event must have one value per sample ({n}), got {t.shape[0]}")
    n_events = int(e.sum())
    if n_events < 2:
        raise ValueError(
            f"need at least 2 observed events to fit a Cox model, got {n_events}; "
            "a survival model cannot be trained on fewer"
        )
    return t.copy(), e.copy()


def standardise(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and SD (population); constant columns get SD 1 (they become 0)."""
    mean = arr.mean(axis=0)
    scale = arr.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return mean, scale


def stratified_holdout(event: np.ndarray, fraction: float, gen: torch.Generator) -> np.ndarray:
    """Boolean mask of a held-out part: ``fraction`` of the events and of the censored,
    at least one event held out and at least two left for training."""
    mask = np.zeros(event.shape[0], dtype=bool)
    for value in (True, False):
        idx = np.flatnonzero(event == value)
        k = round(fraction * idx.size)
        if value:
            k = min(max(k, 1), idx.size - 2)
        if k <= 0:
            continue
        perm = torch.randperm(idx.size, generator=gen).numpy()
        mask[idx[perm[:k]]] = True
    return mask


def l2_penalty(module: nn.Module) -> torch.Tensor:
    """Sum of squared weights of the linear layers (biases excluded)."""
    total = torch.zeros((), dtype=DTYPE)
    for name, p in module.named_parameters():
        if name.endswith("weight"):
            total = total + (p**2).sum()
    return total


def check_hyperparameters(
    lr: float,
    epochs: int,
    l2: float,
    dropout: float,
    ties: str,
    validation_fraction: float,
    patience: int,
) -> None:
    """Raise a ValueError naming the first training hyperparameter out of its range."""
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    if not (0 <= dropout < 1):
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if not (0 <= validation_fraction < 0.5):
        raise ValueError(f"validation_fraction must be in [0, 0.5), got {validation_fraction!r}")
    if int(patience) != patience or patience < 1:
        raise ValueError(f"patience must be a positive integer, got {patience!r}")


def load_weights(net: nn.Module, tensors: dict[str, torch.Tensor], owner: str) -> None:
    """Load a state dict strictly, turning a mismatch into a clear ValueError."""
    expected = net.state_dict()
    if set(expected) != set(tensors):
        raise ValueError(
            f"saved weights do not fit a {owner}: expected tensors {sorted(expected)}, "
            f"got {sorted(tensors)}"
        )
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ValueError(
                f"saved tensor {k!r} has shape {tuple(tensors[k].shape)}, "
                f"a {owner} with these hyperparameters needs {tuple(v.shape)}"
            )
    net.load_state_dict({k: v.to(DTYPE) for k, v in tensors.items()})


def train_cox(
    net: nn.Module,
    make_forward: ForwardFactory,
    t: torch.Tensor,
    e: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    l2: float,
    ties: str,
    validation_fraction: float,
    patience: int,
    gen: torch.Generator,
) -> dict[str, Any]:
    """Full-batch Adam on the Cox loss (+ L2) with optional early stopping.

    Parameters
    ----------
    net : torch.nn.Module
        Trained in place; holds the best epoch's weights at the end when early stopping.
    make_forward : callable
        ``make_forward(rows)`` (rows: a LongTensor of sample indices) returns a function
        ``net -> risks of those samples``; it is called once for the training rows and
        once for the validation rows, so inputs can be prepared once.
    t, e : torch.Tensor
        Times (float64) and events (bool), one per sample.
    lr, epochs, l2, ties, validation_fraction, patience, gen
        As in :class:`TorchCoxModel`; ``gen`` draws the validation split.

    Returns
    -------
    dict
        ``train_loss`` (final Cox NLL per event, without the penalty), ``epochs_run``,
        ``n_samples``, ``n_events``; with early stopping also ``best_epoch``,
        ``val_loss``, ``n_validation``.

    Notes
    -----
    Must be called with torch's global RNG already seeded (dropout draws from it).
    """
    n = t.shape[0]
    e_np = e.numpy().astype(bool)
    if validation_fraction > 0:
        if int(e_np.sum()) < 3:
            raise ValueError(
                "early stopping needs at least 3 events (2 to train, 1 to validate); "
                "use validation_fraction=0"
            )
        hold = stratified_holdout(e_np, validation_fraction, gen)
    else:
        hold = np.zeros(n, dtype=bool)
    train_rows = torch.as_tensor(np.flatnonzero(~hold))
    val_rows = torch.as_tensor(np.flatnonzero(hold))
    fwd_train = make_forward(train_rows)
    fwd_val = make_forward(val_rows) if val_rows.numel() else None
    t_train, e_train = t[train_rows], e[train_rows]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    best_loss = math.inf
    best_epoch = epochs
    best_state: dict[str, torch.Tensor] | None = None
    epochs_run = 0
    for epoch in range(1, epochs + 1):
        net.train()
        opt.zero_grad()
        loss = cox_partial_nll(fwd_train(net), t_train, e_train, ties=ties)
        (loss + l2 * l2_penalty(net)).backward()
        opt.step()
        epochs_run = epoch
        if fwd_val is not None:
            net.eval()
            with torch.no_grad():
                val = float(cox_partial_nll(fwd_val(net), t[val_rows], e[val_rows], ties=ties))
            if val < best_loss - 1e-6:
                best_loss, best_epoch = val, epoch
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            elif epoch - best_epoch >= patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        train_loss = float(cox_partial_nll(fwd_train(net), t_train, e_train, ties=ties))
    metrics: dict[str, Any] = {
        "train_loss": train_loss,
        "epochs_run": epochs_run,
        "n_samples": int(n),
        "n_events": int(e_np.sum()),
    }
    if val_rows.numel():
        metrics["best_epoch"] = int(best_epoch)
        metrics["val_loss"] = float(best_loss)
        metrics["n_validation"] = int(val_rows.numel())
    return metrics


class TorchCoxModel:
    """Base of the torch Cox models: training hyperparameters, seeded fit, persistence.

    The parameters (``dropout, l2, lr, epochs, seed, ties, validation_fraction,
    patience``, in this order) are documented with
    :class:`~napari_gbm.survival.nn.MLPCoxModel`; a subclass checks its own network's
    hyperparameters, then calls ``super().__init__`` with these.
    """

    model_name = ""
    net_: nn.Module | None
    training_metrics_: dict[str, Any]

    def __init__(
        self,
        dropout: float,
        l2: float,
        lr: float,
        epochs: int,
        seed: int,
        ties: str,
        validation_fraction: float,
        patience: int,
    ) -> None:
        check_hyperparameters(lr, epochs, l2, dropout, ties, validation_fraction, patience)
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.lr = float(lr)
        self.epochs = int(epochs)
        self.seed = int(seed)
        self.ties = ties
        self.validation_fraction = float(validation_fraction)
        self.patience = int(patience)
        self.net_ = None
        self.training_metrics_ = {}

    def _training_params(self) -> dict[str, Any]:
        """The shared hyperparameters (JSON-serialisable), for ``get_params``."""
        return {
            "dropout": self.dropout,
            "l2": self.l2,
            "lr": self.lr,
            "epochs": self.epochs,
            "seed": self.seed,
            "ties": self.ties,
            "validation_fraction": self.validation_fraction,
            "patience": self.patience,
        }

    def _fit_network(
        self,
        build: Callable[[], Net],
        make_forward: ForwardFactory,
        time: np.ndarray,
        event: np.ndarray,
    ) -> tuple[Net, dict[str, Any]]:
        """Build the network and train it (:func:`train_cox`) under this model's seed.

        ``build`` runs inside the seeded, forked RNG state (initialisation draws from it).
        Returns the trained network (in eval mode) and its training metrics.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            net = build()
            metrics = train_cox(
                net,
                make_forward,
                torch.as_tensor(time, dtype=torch.float64),
                torch.as_tensor(event),
                lr=self.lr,
                epochs=self.epochs,
                l2=self.l2,
                ties=self.ties,
                validation_fraction=self.validation_fraction,
                patience=self.patience,
                gen=gen,
            )
        return net.eval(), metrics

    def _state(self, net: nn.Module, **meta: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The persistence protocol's ``get_state``: a copy of the network's weights and
        the JSON metadata (model name, hyperparameters, ``meta``, training metrics)."""
        tensors = {k: v.detach().clone() for k, v in net.state_dict().items()}
        full = {
            "model": self.model_name,
            "hyperparameters": self.get_params(),
            **meta,
            "training_metrics": dict(self.training_metrics_),
        }
        return tensors, full

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters (JSON-serialisable), as passed to ``__init__``."""
        return self._training_params()
