"""A multilayer-perceptron Cox model (DeepSurv-style), trained on the Cox partial likelihood.

``MLPCoxModel`` maps a feature vector (one row per patient, or per slide) to a log relative
hazard with a small ReLU network, trained full-batch with Adam on
:func:`napari_gbm.survival._loss.cox_partial_nll` plus an L2 penalty on the weight matrices
(biases excluded). Features are standardised with the training mean and SD, stored with
the model. Training is deterministic for a given ``seed`` (CPU): initialisation and dropout
draw from torch's generator re-seeded inside a forked RNG state, so the caller's global RNG
is left untouched.

Stopping: by default (``validation_fraction=0``) the network trains for exactly ``epochs``
full-batch steps on all the data; with ``validation_fraction > 0`` an event-stratified
random part of the training data is held out, training stops after ``patience`` epochs
without improvement of its Cox loss (or at ``epochs``), and the weights of the best epoch
are kept. With a few hundred patients a short fixed count is a good choice (the held-out
part would be small, its loss noisy, and those patients lost to training). Measured on
the synthetic cohort (400 patients, 8 slide-mean and clinical features, 5-fold CV, seeds
0-4): the defaults (32 hidden units, L2 1e-3, 50 epochs) reach the oracle's C-index minus
0.036-0.049; 200 epochs overfit (minus 0.045-0.066); ``hidden=(8,), l2=1e-2, lr=2e-2,
epochs=50`` does best (minus 0.02-0.04). Small cohorts want small, regularised networks.

The input checks, the training loop and the shared hyperparameters live in
:mod:`napari_gbm.survival._training`, shared with the attention-MIL model
(:func:`as_feature_matrix` and :func:`check_time_event` are importable from here too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ._training import (
    DTYPE,
    TorchCoxModel,
    as_feature_matrix,
    check_time_event,
    load_weights,
    standardise,
)

__all__ = ["MLPCoxModel", "as_feature_matrix", "check_time_event"]


class _MLP(nn.Module):
    def __init__(self, n_features: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        # no bias: the Cox likelihood is invariant to a constant shift of the risk
        layers.append(nn.Linear(width, 1, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class MLPCoxModel(TorchCoxModel):
    """Feed-forward Cox model: risk = MLP(standardised features).

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers (ReLU, then dropout); ``()`` gives a linear Cox model.
    dropout : float
        Dropout probability after each hidden layer (training only).
    l2 : float
        Weight of the L2 penalty on the weight matrices, added to the mean (per event)
        negative partial log-likelihood.
    lr : float
        Adam learning rate.
    epochs : int
        Full-batch steps (the maximum when ``validation_fraction > 0``).
    seed : int
        Seeds initialisation, dropout and the validation split.
    ties : "efron" or "breslow"
    validation_fraction : float
        0 (default): train for ``epochs``; > 0: hold out that fraction (stratified by
        event) for early stopping, keep the best epoch's weights.
    patience : int
        Epochs without validation improvement before stopping.

    Attributes (after ``fit``)
    --------------------------
    feature_names_ : list of str
    mean_, scale_ : ndarray
        Standardisation (training mean and population SD; SD 1 for constant columns).
    training_metrics_ : dict
        ``train_loss`` (final Cox NLL per event, without the penalty), ``epochs_run``,
        ``best_epoch`` and ``val_loss`` when early stopping was used, ``n_samples``,
        ``n_events``.
    """

    model_name = "mlp_cox"

    def __init__(
        self,
        hidden: Sequence[int] = (32,),
        dropout: float = 0.1,
        l2: float = 1e-3,
        lr: float = 1e-2,
        epochs: int = 50,
        seed: int = 0,
        ties: str = "efron",
        validation_fraction: float = 0.0,
        patience: int = 20,
    ) -> None:
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden layer widths must be >= 1, got {hidden}")
        super().__init__(dropout, l2, lr, epochs, seed, ties, validation_fraction, patience)
        self.hidden = hidden
        self.net_: _MLP | None = None
        self.feature_names_: list[str] = []
        self.mean_ = np.zeros(0)
        self.scale_ = np.zeros(0)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters (JSON-serialisable), as passed to ``__init__``."""
        return {"hidden": list(self.hidden), **self._training_params()}

    def fit(self, X: Any, time: Any, event: Any) -> MLPCoxModel:
        """Fit on features ``X`` (DataFrame or (n, d) array), follow-up ``time`` and
        ``event`` (True/1 = event observed). Returns ``self``."""
        arr, names = as_feature_matrix(X)
        if arr.shape[0] < 2:
            raise ValueError(f"need at least 2 samples, got {arr.shape[0]}")
        t, e = check_time_event(time, event, arr.shape[0])
        mean, scale = standardise(arr)
        x_all = torch.as_tensor((arr - mean) / scale, dtype=DTYPE)

        def make_forward(rows: torch.Tensor) -> Callable[[nn.Module], torch.Tensor]:
            x_rows = x_all[rows]
            return lambda m: m(x_rows)

        net, metrics = self._fit_network(
            lambda: _MLP(arr.shape[1], self.hidden, self.dropout), make_forward, t, e
        )
        self.net_ = net
        self.feature_names_ = names
        self.mean_, self.scale_ = mean, scale
        self.training_metrics_ = metrics
        return self

    def _check_fitted(self) -> _MLP:
        if self.net_ is None:
            raise ValueError("this MLPCoxModel is not fitted yet: call fit(X, time, event) first")
        return self.net_

    def predict_risk(self, X: Any) -> np.ndarray:
        """Log relative hazard (higher = worse prognosis) per row of ``X``."""
        net = self._check_fitted()
        arr, _ = as_feature_matrix(X, feature_names=self.feature_names_)
        x = torch.as_tensor((arr - self.mean_) / self.scale_, dtype=DTYPE)
        with torch.no_grad():
            return net.eval()(x).double().numpy()

    # --- persistence protocol (napari_gbm.survival.persist)
    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (the network's weights) and JSON metadata for :func:`save_model`."""
        return self._state(
            self._check_fitted(),
            feature_names=list(self.feature_names_),
            scaling={"mean": self.mean_.tolist(), "scale": self.scale_.tolist()},
        )

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> MLPCoxModel:
        """Rebuild a fitted model from :meth:`get_state`'s output."""
        model = cls(**meta["hyperparameters"])
        names = [str(n) for n in meta["feature_names"]]
        net = _MLP(len(names), model.hidden, model.dropout)
        load_weights(net, tensors, cls.__name__)
        model.net_ = net.eval()
        model.feature_names_ = names
        model.mean_ = np.asarray(meta["scaling"]["mean"], dtype=np.float64)
        model.scale_ = np.asarray(meta["scaling"]["scale"], dtype=np.float64)
        if model.mean_.shape != (len(names),) or model.scale_.shape != (len(names),):
            raise ValueError("model.json scaling does not match its feature names")
        model.training_metrics_ = dict(meta.get("training_metrics", {}))
        return model
