"""Cox partial likelihood in torch, with Breslow or Efron handling of tied event times.

The one loss every survival model here is trained with (linear Cox, MLP, attention MIL).
Definitions as in lifelines and scikit-survival: for each distinct event time t_j with
d_j events D_j and risk set R_j = {i : time_i >= t_j},

- Breslow: sum_j [ sum_{i in D_j} eta_i - d_j log sum_{k in R_j} exp(eta_k) ]
- Efron:   sum_j [ sum_{i in D_j} eta_i - sum_{l=0}^{d_j-1} log( S_Rj - l/d_j S_Dj ) ]
  with S_Rj = sum_{R_j} exp(eta), S_Dj = sum_{D_j} exp(eta).

Censored subjects enter risk sets only. Computed in one sort and cumulative sums
(O(n log n)), stabilised by subtracting max(eta).
"""

from __future__ import annotations

import torch

__all__ = ["TIES", "cox_partial_log_likelihood", "cox_partial_nll"]

TIES = ("efron", "breslow")


def cox_partial_log_likelihood(
    risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str = "efron"
) -> torch.Tensor:
    """The Cox partial log-likelihood (a 0-d tensor, differentiable in ``risk``).

    Parameters
    ----------
    risk : (n,) float tensor
        Linear predictors eta (log relative hazards).
    time : (n,) tensor
        Follow-up times.
    event : (n,) bool or 0/1 tensor
        True where the event was observed, False where censored.
    ties : "efron" or "breslow"
    """
    if ties not in TIES:
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    risk = risk.reshape(-1)
    n = risk.shape[0]
    if time.reshape(-1).shape[0] != n or event.reshape(-1).shape[0] != n:
        raise ValueError("risk, time and event must have the same length")
    dtype = risk.dtype
    order = torch.argsort(time.reshape(-1), descending=True, stable=True)
    eta = risk[order]
    t = time.reshape(-1)[order]
    e = event.reshape(-1)[order].to(dtype)
    if n == 0 or float(e.sum()) == 0.0:
        return risk.sum() * 0.0
    shift = eta.max().detach()
    w = torch.exp(eta - shift)
    _, counts = torch.unique_consecutive(t, return_counts=True)
    n_groups = counts.shape[0]
    ends = torch.cumsum(counts, 0) - 1
    group = torch.repeat_interleave(torch.arange(n_groups, device=risk.device), counts)
    s_r = torch.cumsum(w, 0)[ends]  # risk-set sums at each distinct time (times descending)
    zeros = torch.zeros(n_groups, dtype=dtype, device=risk.device)
    d = zeros.index_add(0, group, e)
    eta_d = (eta * e).sum()
    if ties == "breslow":
        has = d > 0
        return eta_d - (d[has] * (torch.log(s_r[has]) + shift)).sum()
    s_d = zeros.index_add(0, group, w * e)
    # l = number of events before this one within its tied group (0 .. d_j - 1)
    before = torch.cumsum(e, 0) - e
    starts = ends - counts + 1
    l_idx = before - before[starts][group]
    ev = e > 0
    g = group[ev]
    frac = l_idx[ev] / d[g]
    return eta_d - (torch.log(s_r[g] - frac * s_d[g]) + shift).sum()


def cox_partial_nll(
    risk: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    ties: str = "efron",
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative Cox partial log-likelihood: ``reduction="mean"`` divides by the number of
    events (scale-free across batch sizes), ``"sum"`` does not."""
    ll = cox_partial_log_likelihood(risk, time, event, ties)
    if reduction == "sum":
        return -ll
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    n_events = event.reshape(-1).to(risk.dtype).sum().clamp(min=1.0)
    return -ll / n_events
