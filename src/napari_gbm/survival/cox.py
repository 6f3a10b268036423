"""Cox proportional hazards regression in torch float64, fitted by Newton-Raphson.

The objective is the negative Cox partial log-likelihood of
:mod:`napari_gbm.survival._loss` (Efron or Breslow ties) plus an optional ridge penalty

    loss(beta) = -log PL(beta) + l2 / 2 * ||beta||^2

which is scikit-survival's ``CoxPHSurvivalAnalysis(alpha=l2)`` (its loss divided by n has
the same minimum). With ``standardize=True`` (default) the penalty applies to coefficients of
covariates centred and divided by their standard deviation (ddof = 1), as lifelines does:
lifelines' ``CoxPHFitter(penalizer=c)`` adds n * c / 2 * ||beta_std||^2, so it equals
``l2 = n * c`` here. With ``standardize=False`` the penalty is on coefficients in the
covariates' own units (scikit-survival on the raw matrix). Without a penalty the two are
the same fit. Coefficients are always reported per unit of the original covariates.

Standard errors come from the inverse of the observed information (the Hessian of the
loss at the optimum, penalty included, as lifelines), Wald z and two-sided p-values,
hazard ratios exp(coef) with exp(coef +- z_{1-alpha/2} se) intervals.

Numerics: the fit runs on standardised covariates from beta = 0 with Newton steps
(Hessian by automatic differentiation of the shared loss, step halving when the loss does
not decrease) until the gradient norm is below ``tol`` (1e-9). Deterministic: no random
start, CPU float64. Monotone likelihood (a covariate that separates early from late events)
or non-convergence raises :class:`CoxFitError` naming the covariate, never a silent number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from napari_gbm import __version__
from napari_gbm.survival._loss import TIES, cox_partial_log_likelihood
from napari_gbm.survival._validate import check_covariates, check_survival
from napari_gbm.survival.concordance import concordance_index

__all__ = ["SUMMARY_COLUMNS", "CoxFitError", "CoxModel"]

SUMMARY_COLUMNS = (
    "covariate",
    "coef",
    "hazard_ratio",
    "ci_lower",
    "ci_upper",
    "p",
    "se",
    "z",
    "sd",
    "hazard_ratio_per_sd",
    "ci_lower_per_sd",
    "ci_upper_per_sd",
)

# Separation probe: at a true optimum, moving a coefficient this far (in standard
# deviations of its covariate) outwards raises the loss by about I/2 * 10^2; along a
# monotone likelihood it does not rise at all.
_SEPARATION_PROBE_STD = 10.0


class CoxFitError(ValueError):
    """The Cox fit has no finite optimum (separation, collinearity) or did not converge."""


def _objective(
    beta: torch.Tensor,
    z: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    ties: str,
    penalty: torch.Tensor,
) -> torch.Tensor:
    eta = z @ beta
    return -cox_partial_log_likelihood(eta, time, event, ties) + 0.5 * (penalty * beta * beta).sum()


class _Problem:
    """The standardised fitting problem (tensors built once)."""

    def __init__(
        self, z: np.ndarray, time: np.ndarray, event: np.ndarray, ties: str, penalty: np.ndarray
    ) -> None:
        # copies: pandas 3 hands out read-only views, which torch refuses to wrap silently
        self.z = torch.from_numpy(np.array(z, dtype=np.float64, order="C"))
        self.time = torch.from_numpy(np.array(time, dtype=np.float64))
        self.event = torch.from_numpy(event.astype(np.float64))
        self.ties = ties
        self.penalty = torch.from_numpy(np.asarray(penalty, dtype=np.float64))

    def loss(self, beta: torch.Tensor) -> float:
        with torch.no_grad():
            return float(_objective(beta, self.z, self.time, self.event, self.ties, self.penalty))

    def loss_grad_hess(self, beta: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        b = beta.detach().clone().requires_grad_(True)
        loss = _objective(b, self.z, self.time, self.event, self.ties, self.penalty)
        (grad,) = torch.autograd.grad(loss, b, create_graph=True)
        rows = [torch.autograd.grad(grad[i], b, retain_graph=True)[0] for i in range(b.numel())]
        hess = torch.stack(rows).detach()
        hess = 0.5 * (hess + hess.T)
        return float(loss.detach()), grad.detach(), hess


def _collinearity_check(z: np.ndarray, names: list[str]) -> None:
    """Refuse covariates that are (almost) linear combinations of each other."""
    _, sv, vt = np.linalg.svd(z, full_matrices=False)
    if sv[-1] <= 1e-8 * sv[0]:
        null = vt[-1]
        big = np.abs(null) > 1e-3 * np.abs(null).max()
        involved = [names[j] for j in np.argsort(-np.abs(null)) if big[j]]
        raise CoxFitError(
            f"covariates {involved} are collinear (one is a linear combination of the "
            "others); remove one of them"
        )


def _newton(
    problem: _Problem, p: int, names: list[str], max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    beta = torch.zeros(p, dtype=torch.float64)
    for it in range(1, max_iter + 1):
        loss, grad, hess = problem.loss_grad_hess(beta)
        if not (np.isfinite(loss) and bool(torch.isfinite(grad).all())):
            raise CoxFitError(
                f"the Cox loss became non-finite at iteration {it}; "
                f"largest standardised coefficient: {_largest(beta, names)}"
            )
        if float(torch.linalg.vector_norm(grad)) <= tol:
            return beta, hess, it
        chol, info = torch.linalg.cholesky_ex(hess)
        if int(info) != 0:
            raise CoxFitError(
                "the information matrix is singular: the likelihood is flat along some "
                f"covariates (separation or collinearity); check {_largest(beta, names)}, "
                "or fit with l2 > 0"
            )
        step = torch.cholesky_solve(grad[:, None], chol)[:, 0]
        decrement = float(grad @ step)  # Newton decrement squared: predicted decrease * 2
        scale = 1.0
        while True:
            candidate = beta - scale * step
            new_loss = problem.loss(candidate)
            if np.isfinite(new_loss) and new_loss <= loss + 1e-13 * max(1.0, abs(loss)):
                break
            scale *= 0.5
            if scale < 1e-12:
                if decrement <= 1e-20 * max(1.0, abs(loss)):
                    return beta, hess, it  # at the floor of float64 rounding
                raise CoxFitError(
                    f"Newton-Raphson could not decrease the loss at iteration {it} "
                    f"(gradient norm {float(torch.linalg.vector_norm(grad)):.3g}); "
                    f"check {_largest(beta, names)}, or fit with l2 > 0"
                )
        beta = candidate
    raise CoxFitError(
        f"the Cox fit did not converge in {max_iter} Newton iterations (gradient norm "
        f"{float(torch.linalg.vector_norm(grad)):.3g} > tol {tol:g}); the coefficients are "
        f"drifting, likely because of {_largest(beta, names)}: a covariate that (almost) "
        "separates early from late events. Remove it or fit with l2 > 0"
    )


def _separation_check(
    problem: _Problem, beta: torch.Tensor, hess: torch.Tensor, names: list[str]
) -> None:
    """Refuse a "converged" fit that sits on a monotone likelihood (separation).

    Newton steps along a likelihood that rises forever towards an asymptote shrink the
    gradient geometrically, so the gradient test passes at some large coefficient. The
    loss then barely changes if that coefficient (or the flattest direction of the
    information) is pushed further out; at a real optimum it rises steeply.
    """
    p = beta.numel()
    loss0 = problem.loss(beta)
    slack = 1e-9 * max(1.0, abs(loss0))
    directions: list[tuple[torch.Tensor, list[str]]] = []
    for j in range(p):
        if float(beta[j]) != 0.0:
            d = torch.zeros(p, dtype=torch.float64)
            d[j] = float(torch.sign(beta[j]))
            directions.append((d, [names[j]]))
    if p > 1:
        _, vecs = torch.linalg.eigh(hess)
        v = vecs[:, 0]
        if float(v @ beta) < 0:
            v = -v
        ranked = np.argsort(-np.abs(v.numpy()))
        involved = [names[j] for j in ranked if abs(float(v[j])) > 0.3] or [
            names[j] for j in ranked[:3]
        ]
        directions.append((v, involved))
    for d, involved in directions:
        if problem.loss(beta + _SEPARATION_PROBE_STD * d) <= loss0 + slack:
            j = int(np.argmax(np.abs(d.numpy())))
            raise CoxFitError(
                f"covariate(s) {involved} (almost) perfectly separate early from late events: "
                "the partial likelihood keeps increasing as the coefficient grows, so there "
                f"is no finite estimate (standardised coefficient {float(beta[j]):.3g} when "
                "the gradient vanished). Remove or merge them, or fit with l2 > 0"
            )


def _largest(beta: torch.Tensor, names: list[str]) -> str:
    b = beta.detach().numpy()
    j = int(np.argmax(np.abs(b))) if b.size else 0
    return f"covariate {names[j]!r} (standardised coefficient {b[j]:.3g})"


class CoxModel:
    """Cox proportional hazards model (linear predictor, float64).

    Fitted attributes (after :meth:`fit`): ``coef_`` (per original unit), ``se_``,
    ``z_``, ``p_values_``, ``covariance_`` (p x p), ``feature_names_``, ``mean_`` and
    ``scale_`` (the standardisation), ``log_likelihood_`` (unpenalised partial
    log-likelihood at the fit), ``log_likelihood_null_`` (at beta = 0),
    ``concordance_index_`` (Harrell's C on the training data), ``n_``, ``n_events_``,
    ``n_iter_``, ``ties_``, ``l2_``, ``standardize_``.

    Examples
    --------
    >>> model = CoxModel().fit(df[["ki67_pct", "age_years"]], df["os_months"], df["death"])
    >>> model.summary()  # covariate, coef, hazard_ratio, ci_lower, ci_upper, p, se, z
    >>> risk = model.predict_risk(new_df)
    """

    def __init__(self) -> None:
        self.coef_: np.ndarray | None = None
        self.covariance_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.feature_names_: list[str] = []
        self.ties_ = "efron"
        self.l2_ = 0.0
        self.standardize_ = True
        self.n_ = 0
        self.n_events_ = 0
        self.n_iter_ = 0
        self.log_likelihood_ = float("nan")
        self.log_likelihood_null_ = float("nan")
        self.concordance_index_ = float("nan")

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: Any,
        time: Any,
        event: Any,
        *,
        ties: str = "efron",
        l2: float = 0.0,
        standardize: bool = True,
        max_iter: int = 50,
        tol: float = 1e-9,
    ) -> CoxModel:
        """Fit the model.

        Parameters
        ----------
        X : (n, p) DataFrame or array
            Numeric covariates (DataFrame column names become the covariate names, arrays
            get ``x0, x1, ...``). No NaN, no constant or collinear columns.
        time : (n,) array-like
            Follow-up times, > 0.
        event : (n,) array-like of 0/1 or bool
            1 where the event was observed.
        ties : "efron" (default, as lifelines) or "breslow" (as scikit-survival's default)
        l2 : float
            Ridge penalty: ``l2 / 2 * ||beta||^2`` added to the negative partial
            log-likelihood (see the module docstring for the scale it applies to).
        standardize : bool
            Penalise standardised coefficients (True) or coefficients per original unit.
        max_iter, tol
            Newton iterations allowed; convergence when the gradient norm (standardised
            coordinates) is <= tol.

        Returns
        -------
        self
        """
        if ties not in TIES:
            raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
        if not (np.isfinite(l2) and l2 >= 0):
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        t, e = check_survival(time, event, min_subjects=2)
        x, names = check_covariates(X, t.size)
        n, p = x.shape
        n_events = int(e.sum())
        if n_events < 2:
            raise ValueError(
                f"only {n_events} event(s) among {n} subjects: a Cox model needs at least 2"
            )
        if n_events < p + 1:
            raise ValueError(
                f"{n_events} events for {p} covariates: a Cox model needs at least "
                f"covariates + 1 = {p + 1} events (about 10 per covariate for stable "
                "estimates); use fewer covariates"
            )
        mean = x.mean(axis=0)
        scale = x.std(axis=0, ddof=1)
        z = (x - mean) / scale
        _collinearity_check(z, names)
        penalty = np.full(p, float(l2)) if standardize else float(l2) / scale**2
        problem = _Problem(z, t, e, ties, penalty)
        beta, hess, n_iter = _newton(problem, p, names, max_iter, tol)

        _separation_check(problem, beta, hess, names)
        cov_std = torch.cholesky_inverse(torch.linalg.cholesky(hess)).numpy()
        beta_np = beta.numpy().copy()

        self.coef_ = beta_np / scale
        self.covariance_ = cov_std / np.outer(scale, scale)
        self.mean_ = mean
        self.scale_ = scale
        self.feature_names_ = names
        self.ties_ = ties
        self.l2_ = float(l2)
        self.standardize_ = bool(standardize)
        self.n_ = n
        self.n_events_ = n_events
        self.n_iter_ = n_iter
        with torch.no_grad():
            eta = problem.z @ beta
            self.log_likelihood_ = float(
                cox_partial_log_likelihood(eta, problem.time, problem.event, ties)
            )
            self.log_likelihood_null_ = float(
                cox_partial_log_likelihood(eta * 0.0, problem.time, problem.event, ties)
            )
        self.concordance_index_ = concordance_index(t, e, self.predict_risk(x))
        return self

    # ------------------------------------------------------------------ results
    def _require_fit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.coef_ is None or self.covariance_ is None or self.mean_ is None:
            raise RuntimeError("this CoxModel is not fitted yet: call fit() first")
        return self.coef_, self.covariance_, self.mean_

    @property
    def se_(self) -> np.ndarray:
        return np.sqrt(np.diag(self._require_fit()[1]))

    @property
    def z_(self) -> np.ndarray:
        return self._require_fit()[0] / self.se_

    @property
    def p_values_(self) -> np.ndarray:
        return 2.0 * stats.norm.sf(np.abs(self.z_))

    @property
    def hazard_ratios_(self) -> np.ndarray:
        return np.exp(self._require_fit()[0])

    def summary(self, alpha: float = 0.05) -> pd.DataFrame:
        """One row per covariate: ``covariate, coef, hazard_ratio, ci_lower, ci_upper, p,
        se, z`` (coef per original unit; CI of the hazard ratio at level 1 - alpha; Wald p),
        then ``sd`` (the covariate's standard deviation in the fitted data, ddof 1) and the
        hazard ratio with its CI per standard deviation: per unit, a cell density in cells
        per mm² gives a hazard ratio of 1.000 however strong its effect."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        coef = self._require_fit()[0]
        se = self.se_
        sd = np.asarray(self.scale_, dtype=np.float64)
        q = stats.norm.isf(alpha / 2.0)
        return pd.DataFrame(
            {
                "covariate": list(self.feature_names_),
                "coef": coef,
                "hazard_ratio": np.exp(coef),
                "ci_lower": np.exp(coef - q * se),
                "ci_upper": np.exp(coef + q * se),
                "p": self.p_values_,
                "se": se,
                "z": coef / se,
                "sd": sd,
                "hazard_ratio_per_sd": np.exp(coef * sd),
                "ci_lower_per_sd": np.exp((coef - q * se) * sd),
                "ci_upper_per_sd": np.exp((coef + q * se) * sd),
            },
            columns=list(SUMMARY_COLUMNS),
        )

    def predict_risk(self, X: Any) -> np.ndarray:
        """Linear predictor (log relative hazard) centred at the training means:
        ``(X - mean_) @ coef_``. Higher = shorter expected survival.

        ``X``: a DataFrame holding the covariate columns by name (others are ignored), or
        an array with the covariates in training order.
        """
        coef, _, mean = self._require_fit()
        if isinstance(X, pd.DataFrame):
            as_str = [str(c) for c in X.columns]
            repeated = sorted({c for c in self.feature_names_ if as_str.count(c) > 1})
            if repeated:
                raise ValueError(f"X column(s) {repeated} appear more than once")
            missing = [c for c in self.feature_names_ if c not in as_str]
            if missing:
                raise ValueError(f"X lacks the covariate column(s) {missing} the model uses")
            X = X.iloc[:, [as_str.index(c) for c in self.feature_names_]]
        x, _ = check_covariates(X, None, self.feature_names_, allow_constant=True)
        return (x - mean) @ coef

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (float64: ``coef``, ``covariance``, ``mean``, ``scale``) and JSON-able
        metadata; :meth:`from_state` rebuilds a model with identical predictions."""
        coef, cov, mean = self._require_fit()
        assert self.scale_ is not None
        tensors = {
            "coef": torch.from_numpy(coef.copy()),
            "covariance": torch.from_numpy(cov.copy()),
            "mean": torch.from_numpy(mean.copy()),
            "scale": torch.from_numpy(self.scale_.copy()),
        }
        meta: dict[str, Any] = {
            "model": "cox",
            "feature_names": list(self.feature_names_),
            "ties": self.ties_,
            "l2": self.l2_,
            "standardize": self.standardize_,
            "n": int(self.n_),
            "n_events": int(self.n_events_),
            "n_iter": int(self.n_iter_),
            "concordance_index": float(self.concordance_index_),
            "log_likelihood": float(self.log_likelihood_),
            "log_likelihood_null": float(self.log_likelihood_null_),
            "version": __version__,
        }
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> CoxModel:
        """Rebuild a fitted model from :meth:`get_state`'s output."""
        if meta.get("model") != "cox":
            raise ValueError(f"not a Cox model state (model = {meta.get('model')!r})")
        missing = {"coef", "covariance", "mean", "scale"} - set(tensors)
        if missing:
            raise ValueError(f"Cox model state lacks tensor(s) {sorted(missing)}")
        names = [str(c) for c in meta.get("feature_names", [])]
        p = len(names)
        arrays = {k: tensors[k].detach().cpu().to(torch.float64).numpy().copy() for k in tensors}
        shapes = {"coef": (p,), "covariance": (p, p), "mean": (p,), "scale": (p,)}
        for key, shape in shapes.items():
            if arrays[key].shape != shape:
                raise ValueError(
                    f"Cox model state: {key} has shape {arrays[key].shape}, expected {shape} "
                    f"for {p} covariates"
                )
        model = cls()
        model.coef_ = arrays["coef"]
        model.covariance_ = arrays["covariance"]
        model.mean_ = arrays["mean"]
        model.scale_ = arrays["scale"]
        model.feature_names_ = names
        model.ties_ = str(meta.get("ties", "efron"))
        model.l2_ = float(meta.get("l2", 0.0))
        model.standardize_ = bool(meta.get("standardize", True))
        model.n_ = int(meta.get("n", 0))
        model.n_events_ = int(meta.get("n_events", 0))
        model.n_iter_ = int(meta.get("n_iter", 0))
        model.concordance_index_ = float(meta.get("concordance_index", float("nan")))
        model.log_likelihood_ = float(meta.get("log_likelihood", float("nan")))
        model.log_likelihood_null_ = float(meta.get("log_likelihood_null", float("nan")))
        return model
