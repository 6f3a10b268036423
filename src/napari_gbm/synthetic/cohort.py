"""A synthetic glioblastoma cohort whose survival follows a known model of its biomarkers.

Patients have 1-3 slides, slides have 20-60 tiles, tiles have per-tile biomarkers; the
slide table is computed from the tiles (so the two always agree) and survival is drawn from
a Weibull proportional-hazards model of patient-level covariates with known log hazard
ratios. Stratification code (Kaplan-Meier, Cox, MLP, attention MIL) can then be checked
against the truth: the oracle risk, the true hazard ratios and the true median survival.

The generative model
--------------------
Patient ``p``: age ~ N(62, 11) clipped to 20-90 years; IDH mutant with probability 0.08;
MGMT promoter methylated with probability 0.40; a proliferation level ``u_p`` (logit of
the Ki-67 fraction outside hotspots) ~ N(logit 0.14, 0.6) and a hotspot propensity
``v_p`` ~ N(-1.9, 0.8).

Slide ``s`` of patient ``p``: ``u_s = u_p + N(0, 0.15)``; hotspot probability
``f_s = sigmoid(v_p + N(0, 0.3))``; necrosis level ~ 0.5 Beta(2, 3); viable cell density
~ N(4,600, 450) cells/mm² (clipped 3,500-5,400); mean nucleus area ~ N(42, 5) µm²;
within-tile nucleus-area CV ~ U(0.20, 0.62); mean DAB grade of positive nuclei
~ U(1.3, 2.5).

Tile ``t`` of slide ``s`` (all tiles are ``tile_um`` square, all tissue): a "high
proliferation hotspot" with probability ``f_s``. Ki-67 fraction
``sigmoid(u_s + N(0, 0.25)) + 0.30 * hotspot`` (at most 0.95); necrosis fraction
~ Beta with mean = the slide's level (halved in hotspots); cell density = viable density
x (1 + 0.15 hotspot) x (1 - 0.7 necrosis) x lognormal(0.08); ``n_cells`` ~ Poisson(density
x area); ``n_positive`` ~ Binomial(n_cells, Ki-67 fraction).

Slide biomarkers are computed from the tiles, as an analysis of the slide would:
``positive_percent`` = 100 sum(n_positive) / sum(n_cells) (the Ki-67 labelling index over
all the slide's cells); ``cell_density_per_mm2`` = sum(n_cells) / tissue area (= the mean
of the tile densities, tiles having equal areas); ``necrosis_fraction`` = mean of the
tiles'; ``nucleus_area_um2_cv`` = the population CV of all the slide's nucleus areas, from
the tiles' means and standard deviations (law of total variance, cell-weighted);
``h_score`` = positive_percent x mean grade of positive nuclei (QuPath's H-score,
100 (n1 + 2 n2 + 3 n3) / N, is exactly that product).

Patient-level covariates are the unweighted MEAN OVER THE PATIENT'S SLIDES of the slide
values (each slide counts once, whatever its number of tiles): ``positive_percent`` and
``hotspot_fraction`` (the fraction of a slide's tiles that are hotspots).

Survival: Weibull proportional hazards, S(t | x) = exp(-(t / scale)^k exp(eta)), with
eta = sum_k beta_k (x_k - mean_k) over ``positive_percent`` (log HR per percentage point,
so that one cohort SD gives HR ``ki67_hr_per_sd``, 1.73 as the pooled univariable HR of
14 GBM cohorts), ``hotspot_fraction`` (HR ``hotspot_hr_per_sd`` per cohort SD), ``age``
(HR ``age_hr_per_decade`` per 10 years), ``mgmt_methylated`` (HR ``mgmt_hr``) and
``idh_mutant`` (HR ``idh_hr``). The scale is solved so that the cohort's true marginal
median survival, mean_i S(median | x_i) = 0.5, is ``median_survival_months`` (GBM:
about 15 months with radio-chemotherapy). Censoring: administrative (patients enrolled
uniformly over ``accrual_months``, analysed ``min_follow_up_months`` after the last
enrolment) and random drop-out at ``dropout_per_month``; about a quarter of patients are
censored with the defaults. The hotspot term is a tile-level effect: the fraction of
hotspot tiles drives hazard beyond the mean Ki-67, so a model that sees the tiles (MIL)
has signal that slide means only partly carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SyntheticCohort", "make_synthetic_cohort"]

#: Patient-level covariates that drive the hazard, in the order of ``true_log_hr``.
HAZARD_COVARIATES = ("positive_percent", "hotspot_fraction", "age", "mgmt_methylated", "idh_mutant")
#: Slide biomarkers (columns of ``SyntheticCohort.slides``), aggregated per patient as means.
SLIDE_BIOMARKERS = (
    "positive_percent",
    "cell_density_per_mm2",
    "necrosis_fraction",
    "nucleus_area_um2_cv",
    "h_score",
)
#: Per-tile features usable as MIL input (columns of ``SyntheticCohort.tiles``).
TILE_FEATURES = (
    "n_cells",
    "cell_density_per_mm2",
    "positive_percent",
    "nucleus_area_um2_mean",
    "necrosis_fraction",
)


@dataclass(frozen=True)
class SyntheticCohort:
    """A synthetic cohort with known survival model (see the module docstring).

    Attributes
    ----------
    slides : DataFrame
        One row per slide: ``slide_id``, ``patient_id``, ``n_tiles``, ``n_cells`` and the
        biomarkers ``positive_percent`` (Ki-67 index, %), ``cell_density_per_mm2``,
        ``necrosis_fraction``, ``nucleus_area_um2_cv``, ``h_score`` (0-300).
    tiles : DataFrame
        One row per tile: ``slide_id``, ``patient_id``, ``tile_id`` (unique in the cohort),
        ``n_cells``, ``n_positive``, ``cell_density_per_mm2``, ``positive_percent``,
        ``nucleus_area_um2_mean``, ``nucleus_area_um2_std``, ``necrosis_fraction`` and the
        generator's truth ``is_hotspot``.
    clinical : DataFrame
        One row per patient: ``patient_id``, ``time_months``, ``event`` (bool, True =
        death observed), ``age`` (years), ``idh_mutant``, ``mgmt_methylated`` (bool).
    patients : DataFrame
        The covariates that drive the hazard, one row per patient in ``clinical``'s order
        (``patient_id`` and :data:`HAZARD_COVARIATES`), plus the uncensored
        ``true_time_months``.
    true_log_hr : dict of str to float
        Log hazard ratio per unit of each covariate in ``patients``.
    oracle_risk : ndarray, shape (n_patients,)
        The true linear predictor eta (centred), in ``clinical``'s order.
    params : dict
        Generator settings and the solved Weibull ``scale_months`` and ``shape``.
    """

    slides: pd.DataFrame
    tiles: pd.DataFrame
    clinical: pd.DataFrame
    patients: pd.DataFrame
    true_log_hr: dict[str, float]
    oracle_risk: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def patient_table(self) -> pd.DataFrame:
        """Patient-level features: the mean of each slide biomarker over the patient's
        slides, joined to the clinical table (one row per patient, ``clinical``'s order)."""
        means = self.slides.groupby("patient_id", sort=False)[list(SLIDE_BIOMARKERS)].mean()
        return self.clinical.join(means, on="patient_id")

    def tile_bags(self, features: tuple[str, ...] | list[str] = TILE_FEATURES) -> list[np.ndarray]:
        """One bag per patient (``clinical``'s order): all tiles of all the patient's
        slides, as an (n_tiles, n_features) float64 array."""
        grouped = self.tiles.groupby("patient_id", sort=False)
        cols = list(features)
        return [
            grouped.get_group(pid)[cols].to_numpy(np.float64) for pid in self.clinical.patient_id
        ]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _check_range(name: str, value: tuple[int, int], minimum: int) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of integers, got {value!r}") from None
    if lo < minimum or hi < lo:
        raise ValueError(f"{name} must satisfy {minimum} <= min <= max, got {value!r}")
    return lo, hi


def _solve_scale(eta: np.ndarray, shape: float, median: float) -> float:
    """The Weibull scale such that mean_i exp(-(median/scale)^shape exp(eta_i)) = 0.5."""

    def surv_at_median(log_scale: float) -> float:
        h = (median / math.exp(log_scale)) ** shape
        return float(np.mean(np.exp(-h * np.exp(eta))))

    lo, hi = math.log(median) - 20.0, math.log(median) + 20.0
    for _ in range(200):  # bisection: survival at the median increases with the scale
        mid = 0.5 * (lo + hi)
        if surv_at_median(mid) < 0.5:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def make_synthetic_cohort(
    n_patients: int = 300,
    slides_per_patient: tuple[int, int] = (1, 3),
    tiles_per_slide: tuple[int, int] = (20, 60),
    seed: int = 0,
    *,
    median_survival_months: float = 15.5,
    weibull_shape: float = 1.3,
    ki67_hr_per_sd: float = 1.73,
    hotspot_hr_per_sd: float = 1.6,
    age_hr_per_decade: float = 1.3,
    mgmt_hr: float = 0.55,
    idh_hr: float = 0.4,
    accrual_months: float = 36.0,
    min_follow_up_months: float = 24.0,
    dropout_per_month: float = 0.005,
    tile_um: float = 512.0,
) -> SyntheticCohort:
    """Draw a synthetic GBM cohort (deterministic by ``seed``); see the module docstring.

    Parameters
    ----------
    n_patients : int
        At least 10.
    slides_per_patient, tiles_per_slide : (int, int)
        Inclusive ranges, drawn uniformly per patient / per slide.
    seed : int
    median_survival_months : float
        True marginal median survival of the cohort (without censoring).
    weibull_shape : float
        Weibull shape k (1 = exponential; > 1 = hazard rising with time).
    ki67_hr_per_sd, hotspot_hr_per_sd : float
        Hazard ratio per cohort SD of patient-level Ki-67 index / hotspot tile fraction.
    age_hr_per_decade, mgmt_hr, idh_hr : float
        Hazard ratios per 10 years of age, for MGMT methylation and IDH mutation.
    accrual_months, min_follow_up_months, dropout_per_month : float
        Censoring: uniform enrolment over ``accrual_months``, analysis
        ``min_follow_up_months`` after the last enrolment, exponential drop-out.
    tile_um : float
        Tile side (µm); tiles are all tissue.

    Returns
    -------
    SyntheticCohort
    """
    if int(n_patients) != n_patients or n_patients < 10:
        raise ValueError(f"n_patients must be an integer >= 10, got {n_patients!r}")
    n_patients = int(n_patients)
    s_lo, s_hi = _check_range("slides_per_patient", slides_per_patient, 1)
    t_lo, t_hi = _check_range("tiles_per_slide", tiles_per_slide, 1)
    positive = {
        "median_survival_months": median_survival_months,
        "weibull_shape": weibull_shape,
        "ki67_hr_per_sd": ki67_hr_per_sd,
        "hotspot_hr_per_sd": hotspot_hr_per_sd,
        "age_hr_per_decade": age_hr_per_decade,
        "mgmt_hr": mgmt_hr,
        "idh_hr": idh_hr,
        "accrual_months": accrual_months,
        "tile_um": tile_um,
    }
    for name, value in positive.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    for name, value in (
        ("min_follow_up_months", min_follow_up_months),
        ("dropout_per_month", dropout_per_month),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    rng = np.random.default_rng(seed)
    tile_area_mm2 = (tile_um / 1000.0) ** 2

    # --- patients
    pids = np.array([f"P{i:04d}" for i in range(n_patients)])
    age = np.clip(rng.normal(62.0, 11.0, n_patients), 20.0, 90.0).round(1)
    idh = rng.random(n_patients) < 0.08
    mgmt = rng.random(n_patients) < 0.40
    u_p = rng.normal(math.log(0.14 / 0.86), 0.6, n_patients)
    v_p = rng.normal(-1.9, 0.8, n_patients)

    # --- slides
    n_slides = rng.integers(s_lo, s_hi + 1, n_patients)
    slide_patient = np.repeat(np.arange(n_patients), n_slides)
    n_s = slide_patient.size
    u_s = u_p[slide_patient] + rng.normal(0.0, 0.15, n_s)
    f_s = _sigmoid(v_p[slide_patient] + rng.normal(0.0, 0.3, n_s))
    necrosis_level = 0.5 * rng.beta(2.0, 3.0, n_s)
    viable_density = np.clip(rng.normal(4600.0, 450.0, n_s), 3500.0, 5400.0)
    area_mean_s = np.clip(rng.normal(42.0, 5.0, n_s), 25.0, 70.0)
    area_cv_within = rng.uniform(0.2, 0.62, n_s)
    mean_grade = rng.uniform(1.3, 2.5, n_s)
    slide_ids = np.array(
        [f"{pids[p]}-S{k}" for p, k in zip(slide_patient, _rank(slide_patient), strict=True)]
    )

    # --- tiles
    n_tiles = rng.integers(t_lo, t_hi + 1, n_s)
    tile_slide = np.repeat(np.arange(n_s), n_tiles)
    n_t = tile_slide.size
    hot = rng.random(n_t) < f_s[tile_slide]
    ki_frac = np.minimum(_sigmoid(u_s[tile_slide] + rng.normal(0.0, 0.25, n_t)) + 0.30 * hot, 0.95)
    nec_mean = necrosis_level[tile_slide] * np.where(hot, 0.5, 1.0)
    conc = 10.0
    necrosis = rng.beta(nec_mean * conc + 1e-3, (1.0 - nec_mean) * conc + 1e-3)
    density = (
        viable_density[tile_slide]
        * (1.0 + 0.15 * hot)
        * (1.0 - 0.7 * necrosis)
        * np.exp(rng.normal(0.0, 0.08, n_t))
    )
    n_cells = np.maximum(rng.poisson(density * tile_area_mm2), 1)
    n_pos = rng.binomial(n_cells, ki_frac)
    area_mean_t = area_mean_s[tile_slide] * (1.0 + 0.10 * hot) * np.exp(rng.normal(0.0, 0.08, n_t))
    area_std_t = area_cv_within[tile_slide] * area_mean_t

    tiles = pd.DataFrame(
        {
            "slide_id": slide_ids[tile_slide],
            "patient_id": pids[slide_patient[tile_slide]],
            "tile_id": np.arange(n_t, dtype=np.int64),
            "n_cells": n_cells.astype(np.int64),
            "n_positive": n_pos.astype(np.int64),
            "cell_density_per_mm2": n_cells / tile_area_mm2,
            "positive_percent": 100.0 * n_pos / n_cells,
            "nucleus_area_um2_mean": area_mean_t,
            "nucleus_area_um2_std": area_std_t,
            "necrosis_fraction": necrosis,
            "is_hotspot": hot,
        }
    )

    # --- slide biomarkers, from the tiles
    cells_s = np.bincount(tile_slide, weights=n_cells, minlength=n_s)
    pos_s = np.bincount(tile_slide, weights=n_pos, minlength=n_s)
    pp_s = 100.0 * pos_s / cells_s
    area_s = np.bincount(tile_slide, weights=n_cells * area_mean_t, minlength=n_s) / cells_s
    second = n_cells * (area_std_t**2 + area_mean_t**2)
    var_s = np.bincount(tile_slide, weights=second, minlength=n_s) / cells_s - area_s**2
    hot_frac_s = np.bincount(tile_slide, weights=hot, minlength=n_s) / n_tiles
    slides = pd.DataFrame(
        {
            "slide_id": slide_ids,
            "patient_id": pids[slide_patient],
            "n_tiles": n_tiles.astype(np.int64),
            "n_cells": cells_s.astype(np.int64),
            "positive_percent": pp_s,
            "cell_density_per_mm2": cells_s / (n_tiles * tile_area_mm2),
            "necrosis_fraction": np.bincount(tile_slide, weights=necrosis, minlength=n_s) / n_tiles,
            "nucleus_area_um2_cv": np.sqrt(np.maximum(var_s, 0.0)) / area_s,
            "h_score": pp_s * mean_grade,
        }
    )

    # --- patient covariates: mean over the patient's slides
    per_slide = np.bincount(slide_patient, minlength=n_patients)
    pp_p = np.bincount(slide_patient, weights=pp_s, minlength=n_patients) / per_slide
    hf_p = np.bincount(slide_patient, weights=hot_frac_s, minlength=n_patients) / per_slide
    covariates = {
        "positive_percent": pp_p,
        "hotspot_fraction": hf_p,
        "age": age,
        "mgmt_methylated": mgmt.astype(np.float64),
        "idh_mutant": idh.astype(np.float64),
    }
    sd_pp = float(np.std(pp_p, ddof=1))
    sd_hf = float(np.std(hf_p, ddof=1))
    if sd_pp == 0.0 or sd_hf == 0.0:  # impossible with continuous draws; guards the division
        raise ValueError("degenerate cohort: patient-level Ki-67 has no spread")
    true_log_hr = {
        "positive_percent": math.log(ki67_hr_per_sd) / sd_pp,
        "hotspot_fraction": math.log(hotspot_hr_per_sd) / sd_hf,
        "age": math.log(age_hr_per_decade) / 10.0,
        "mgmt_methylated": math.log(mgmt_hr),
        "idh_mutant": math.log(idh_hr),
    }
    eta = np.zeros(n_patients)
    for name in HAZARD_COVARIATES:
        x = covariates[name]
        eta += true_log_hr[name] * (x - x.mean())

    # --- survival and censoring
    scale = _solve_scale(eta, weibull_shape, median_survival_months)
    e = rng.exponential(1.0, n_patients)
    true_time = scale * (e * np.exp(-eta)) ** (1.0 / weibull_shape)
    admin = min_follow_up_months + rng.uniform(0.0, accrual_months, n_patients)
    if dropout_per_month > 0:
        dropout = rng.exponential(1.0 / dropout_per_month, n_patients)
    else:
        dropout = np.full(n_patients, np.inf)
    censor = np.minimum(admin, dropout)
    event = true_time <= censor
    time = np.where(event, true_time, censor)

    clinical = pd.DataFrame(
        {
            "patient_id": pids,
            "time_months": time,
            "event": event,
            "age": age,
            "idh_mutant": idh,
            "mgmt_methylated": mgmt,
        }
    )
    patients = pd.DataFrame({"patient_id": pids, **covariates, "true_time_months": true_time})
    params: dict[str, Any] = {
        "n_patients": n_patients,
        "slides_per_patient": (s_lo, s_hi),
        "tiles_per_slide": (t_lo, t_hi),
        "seed": seed,
        "tile_area_mm2": tile_area_mm2,
        "scale_months": scale,
        "shape": weibull_shape,
        **positive,
        "min_follow_up_months": min_follow_up_months,
        "dropout_per_month": dropout_per_month,
    }
    return SyntheticCohort(
        slides=slides,
        tiles=tiles,
        clinical=clinical,
        patients=patients,
        true_log_hr=true_log_hr,
        oracle_risk=eta,
        params=params,
    )


def _rank(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal consecutive values."""
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    counts = np.diff(np.r_[starts, groups.size])
    return np.arange(groups.size) - np.repeat(starts, counts)
