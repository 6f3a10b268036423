"""Attention multiple-instance learning (MIL) Cox model: one bag of tiles per patient.

Each patient is a bag of tile feature vectors (all tiles of all that patient's slides).
Tiles are embedded by a small ReLU layer, h_k = ReLU(W x_k + b); gated attention
(Ilse, Tomczak & Welling, "Attention-based deep multiple instance learning", ICML 2018,
eq. 9) weighs them,

    a_k = softmax_k( w^T (tanh(V h_k) * sigmoid(U h_k)) ),

the patient embedding is z = sum_k a_k h_k, and the risk is a linear function of z (and
of optional patient-level covariates such as age or MGMT status, concatenated to z). The
whole network is trained full-batch with Adam on the Cox partial likelihood over patients
(:func:`napari_gbm.survival._loss.cox_partial_nll`) plus an L2 penalty on its weight
matrices. Bags of different lengths are packed end to end (the tiles of all bags in one
matrix, with each tile's bag index) and the softmax runs within each bag.
``attention(bag)`` returns the per-tile weights a_k: which tiles drive a patient's risk,
to be shown as a map over the slide.

Tile features (and covariates) are standardised with the mean and SD of the training tiles
(patients). Stopping and determinism are as in :class:`napari_gbm.survival.nn.MLPCoxModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
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

__all__ = ["AttentionMILCoxModel"]


class _GatedAttentionMIL(nn.Module):
    def __init__(
        self,
        n_features: int,
        n_covariates: int,
        embed_dim: int,
        attention_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(n_features, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(embed_dim, attention_dim)
        self.attention_u = nn.Linear(embed_dim, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        # no bias: the Cox likelihood is invariant to a constant shift of the risk
        self.head = nn.Linear(embed_dim + n_covariates, 1, bias=False)

    def attend(
        self, x: torch.Tensor, bag: torch.Tensor, n_bags: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tiles x (N, F) of bags ``bag`` (N,) in 0..n_bags-1 -> tile embeddings (N, L) and
        attention weights (N,), a softmax within each bag."""
        h = self.embed(x)
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        logits = self.attention_w(gate).squeeze(-1)
        # softmax per bag: subtract the bag's max (no gradient needed through it)
        top = torch.full((n_bags,), float("-inf"), dtype=logits.dtype)
        top = top.scatter_reduce(0, bag, logits.detach(), reduce="amax")
        w = torch.exp(logits - top[bag])
        total = torch.zeros(n_bags, dtype=w.dtype).index_add(0, bag, w)
        return h, w / total[bag]

    def forward(
        self, x: torch.Tensor, bag: torch.Tensor, n_bags: int, cov: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Risk (n_bags,) and attention weights (N,) of packed bags; cov (n_bags, C)."""
        h, weights = self.attend(x, bag, n_bags)
        z = torch.zeros(n_bags, h.shape[1], dtype=h.dtype).index_add(
            0, bag, weights.unsqueeze(-1) * h
        )
        if cov is not None:
            z = torch.cat([z, cov], dim=1)
        return self.head(z).squeeze(-1), weights


def _check_bags(
    bags: Any, feature_names: Sequence[str] | None
) -> tuple[list[np.ndarray], list[str]]:
    """Finite float64 (n_tiles_i, d) arrays with the same d; DataFrames give names."""
    if isinstance(bags, np.ndarray | pd.DataFrame | torch.Tensor):
        raise ValueError(
            "bags must be a list with one (n_tiles, n_features) array per patient, "
            f"got a single {type(bags).__name__}"
        )
    try:
        bag_list = list(bags)
    except TypeError:
        raise ValueError("bags must be a list of (n_tiles, n_features) arrays") from None
    if not bag_list:
        raise ValueError("bags is empty: need one bag of tiles per patient")
    out: list[np.ndarray] = []
    names: list[str] | None = list(feature_names) if feature_names is not None else None
    for i, bag in enumerate(bag_list):
        if not isinstance(bag, pd.DataFrame):
            try:
                bag = np.asarray(bag, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"bag {i} must be a numeric (n_tiles, n_features) array") from None
            if bag.size and bag.ndim != 2:
                raise ValueError(
                    f"bag {i} must be 2-D (n_tiles, n_features), got shape {bag.shape}"
                )
        if len(bag) == 0:
            raise ValueError(
                f"bag {i} is empty (a patient without tiles); drop that patient or give it tiles"
            )
        arr, bag_names = as_feature_matrix(bag, what=f"bag {i}", feature_names=names)
        if names is None:
            names = bag_names
        out.append(arr)
    assert names is not None
    return out, names


def _pack(
    bags: list[np.ndarray], mean: np.ndarray, scale: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised tiles of all bags end to end (N, F) and each tile's bag index (N,)."""
    lengths = np.array([b.shape[0] for b in bags])
    x = (np.concatenate(bags, axis=0) - mean) / scale
    bag = np.repeat(np.arange(len(bags)), lengths)
    return torch.as_tensor(x, dtype=DTYPE), torch.as_tensor(bag)


class AttentionMILCoxModel(TorchCoxModel):
    """Gated-attention MIL Cox model over patients' bags of tile features.

    Parameters
    ----------
    embed_dim : int
        Width of the tile embedding h (and of the pooled patient embedding).
    attention_dim : int
        Width of the gated attention's hidden layer.
    dropout : float
        Dropout on the tile embedding (training only).
    l2, lr, epochs, seed, ties, validation_fraction, patience
        As for :class:`napari_gbm.survival.nn.MLPCoxModel`.

    Attributes (after ``fit``)
    --------------------------
    feature_names_, covariate_names_ : list of str
    mean_, scale_ : ndarray
        Tile-feature standardisation (over all training tiles).
    cov_mean_, cov_scale_ : ndarray
        Covariate standardisation (over training patients); empty without covariates.
    training_metrics_ : dict
    """

    model_name = "attention_mil_cox"

    def __init__(
        self,
        embed_dim: int = 16,
        attention_dim: int = 8,
        dropout: float = 0.1,
        l2: float = 1e-3,
        lr: float = 1e-2,
        epochs: int = 100,
        seed: int = 0,
        ties: str = "efron",
        validation_fraction: float = 0.0,
        patience: int = 20,
    ) -> None:
        if int(embed_dim) != embed_dim or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive integer, got {embed_dim!r}")
        if int(attention_dim) != attention_dim or attention_dim < 1:
            raise ValueError(f"attention_dim must be a positive integer, got {attention_dim!r}")
        super().__init__(dropout, l2, lr, epochs, seed, ties, validation_fraction, patience)
        self.embed_dim = int(embed_dim)
        self.attention_dim = int(attention_dim)
        self.net_: _GatedAttentionMIL | None = None
        self.feature_names_: list[str] = []
        self.covariate_names_: list[str] = []
        self.mean_ = np.zeros(0)
        self.scale_ = np.zeros(0)
        self.cov_mean_ = np.zeros(0)
        self.cov_scale_ = np.zeros(0)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters (JSON-serialisable), as passed to ``__init__``."""
        return {
            "embed_dim": self.embed_dim,
            "attention_dim": self.attention_dim,
            **self._training_params(),
        }

    def _covariates(self, covariates: Any, n: int, fitted: bool) -> np.ndarray | None:
        if fitted and not self.covariate_names_:
            if covariates is not None:
                raise ValueError("this model was fitted without covariates; pass covariates=None")
            return None
        if covariates is None:
            if fitted:
                raise ValueError(
                    f"this model was fitted with covariates {self.covariate_names_}; pass them"
                )
            return None
        names = self.covariate_names_ if fitted else None
        arr, _ = as_feature_matrix(covariates, what="covariates", feature_names=names)
        if arr.shape[0] != n:
            raise ValueError(f"covariates has {arr.shape[0]} rows, expected one per bag ({n})")
        return arr

    def fit(self, bags: Any, time: Any, event: Any, covariates: Any = None) -> AttentionMILCoxModel:
        """Fit on one bag per patient.

        Parameters
        ----------
        bags : list of (n_tiles_i, n_features) arrays or DataFrames
            All tiles of each patient; lengths may differ; none may be empty.
        time, event : array-like, one value per bag
        covariates : (n_patients, k) array or DataFrame, optional
            Patient-level covariates (age, MGMT, ...) entering the risk linearly next to
            the pooled tile embedding.
        """
        arrs, names = _check_bags(bags, None)
        n = len(arrs)
        if n < 2:
            raise ValueError(f"need at least 2 patients (bags), got {n}")
        t, e = check_time_event(time, event, n)
        cov_arr = self._covariates(covariates, n, fitted=False)
        mean, scale = standardise(np.concatenate(arrs, axis=0))
        cov_names: list[str] = []
        cov_all: np.ndarray | None = None
        cov_mean, cov_scale = np.zeros(0), np.zeros(0)
        if cov_arr is not None:
            cov_mean, cov_scale = standardise(cov_arr)
            cov_all = (cov_arr - cov_mean) / cov_scale
            cov_names = as_feature_matrix(covariates, what="covariates")[1]
        n_cov = 0 if cov_arr is None else cov_arr.shape[1]

        def make_forward(rows: torch.Tensor) -> Callable[[nn.Module], torch.Tensor]:
            idx = rows.numpy()
            x, bag = _pack([arrs[i] for i in idx], mean, scale)
            c = None if cov_all is None else torch.as_tensor(cov_all[idx], dtype=DTYPE)
            return lambda m: m(x, bag, idx.size, c)[0]

        net, metrics = self._fit_network(
            lambda: _GatedAttentionMIL(
                len(names), n_cov, self.embed_dim, self.attention_dim, self.dropout
            ),
            make_forward,
            t,
            e,
        )
        metrics["n_tiles"] = int(sum(a.shape[0] for a in arrs))
        self.net_ = net
        self.feature_names_ = names
        self.covariate_names_ = cov_names
        self.mean_, self.scale_ = mean, scale
        self.cov_mean_, self.cov_scale_ = cov_mean, cov_scale
        self.training_metrics_ = metrics
        return self

    def _check_fitted(self) -> _GatedAttentionMIL:
        if self.net_ is None:
            raise ValueError(
                "this AttentionMILCoxModel is not fitted yet: call fit(bags, time, event) first"
            )
        return self.net_

    def _forward(self, bags: Any, covariates: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        net = self._check_fitted()
        arrs, _ = _check_bags(bags, self.feature_names_)
        cov_arr = self._covariates(covariates, len(arrs), fitted=True)
        x, bag = _pack(arrs, self.mean_, self.scale_)
        cov_t = None
        if cov_arr is not None:
            cov_t = torch.as_tensor((cov_arr - self.cov_mean_) / self.cov_scale_, dtype=DTYPE)
        with torch.no_grad():
            risk, weights = net.eval()(x, bag, len(arrs), cov_t)
        w = weights.double().numpy()
        ends = np.cumsum([a.shape[0] for a in arrs])
        return risk.double().numpy(), np.split(w, ends[:-1])

    def predict_risk(self, bags: Any, covariates: Any = None) -> np.ndarray:
        """Log relative hazard per bag (patient); higher = worse prognosis."""
        return self._forward(bags, covariates)[0]

    def attention(self, bag: Any) -> np.ndarray:
        """Attention weight of each tile of one bag (n_tiles,), non-negative, summing to 1.

        Attention depends on the tiles only, not on the covariates."""
        net = self._check_fitted()
        (arr,), _ = _check_bags([bag], self.feature_names_)
        x, bag = _pack([arr], self.mean_, self.scale_)
        with torch.no_grad():
            _, w = net.eval().attend(x, bag, 1)
        return w.double().numpy()

    # --- persistence protocol (napari_gbm.survival.persist)
    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (the network's weights) and JSON metadata for :func:`save_model`."""
        return self._state(
            self._check_fitted(),
            feature_names=list(self.feature_names_),
            covariate_names=list(self.covariate_names_),
            scaling={
                "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(),
                "covariate_mean": self.cov_mean_.tolist(),
                "covariate_scale": self.cov_scale_.tolist(),
            },
        )

    @classmethod
    def from_state(
        cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> AttentionMILCoxModel:
        """Rebuild a fitted model from :meth:`get_state`'s output."""
        model = cls(**meta["hyperparameters"])
        names = [str(n) for n in meta["feature_names"]]
        cov_names = [str(n) for n in meta.get("covariate_names", [])]
        net = _GatedAttentionMIL(
            len(names), len(cov_names), model.embed_dim, model.attention_dim, model.dropout
        )
        load_weights(net, tensors, cls.__name__)
        sc = meta["scaling"]
        model.net_ = net.eval()
        model.feature_names_ = names
        model.covariate_names_ = cov_names
        model.mean_ = np.asarray(sc["mean"], dtype=np.float64)
        model.scale_ = np.asarray(sc["scale"], dtype=np.float64)
        model.cov_mean_ = np.asarray(sc.get("covariate_mean", []), dtype=np.float64)
        model.cov_scale_ = np.asarray(sc.get("covariate_scale", []), dtype=np.float64)
        if model.mean_.shape != (len(names),) or model.scale_.shape != (len(names),):
            raise ValueError("model.json scaling does not match its feature names")
        if model.cov_mean_.shape != (len(cov_names),):
            raise ValueError("model.json covariate scaling does not match its covariate names")
        model.training_metrics_ = dict(meta.get("training_metrics", {}))
        return model
