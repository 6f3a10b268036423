"""Slides -> patients: the aggregation rules by hand, and the clinical join's checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_gbm.survival.patients import aggregate_patients, join_clinical


def _slides():
    return pd.DataFrame(
        {
            "slide_id": ["a1", "a2", "b1"],
            "patient_id": ["A", "A", "B"],
            "n_cells": [1000, 3000, 500],
            "analysed_tissue_area_mm2": [1.0, 2.0, 0.5],
            "tissue_area_mm2": [1.0, 2.0, 0.5],
            "cell_density_per_mm2": [1000.0, 1500.0, 1000.0],
            "n_graded": [1000, 3000, 500],
            "n_negative": [900, 1800, 500],
            "n_1plus": [100, 600, 0],
            "n_2plus": [0, 600, 0],
            "n_3plus": [0, 0, 0],
            "n_positive": [100, 1200, 0],
            "positive_percent": [10.0, 40.0, 0.0],
            "h_score": [10.0, 60.0, 0.0],
            "hotspot_positive_percent": [20.0, 55.0, 1.0],
            "necrosis_fraction": [0.1, 0.4, 0.0],
            "nucleus_area_um2_cv": [0.3, 0.5, 0.2],
            "age": [60.0, 60.0, 50.0],
        }
    )


def test_aggregation_rules_by_hand():
    p = aggregate_patients(_slides()).set_index("patient_id")
    a = p.loc["A"]
    assert a["n_slides"] == 2 and a["n_cells"] == 4000
    assert a["cell_density_per_mm2"] == pytest.approx(4000 / 3.0)  # pooled, not 1250
    assert a["positive_percent"] == pytest.approx(100 * 1300 / 4000)  # pooled, not 25
    assert a["h_score"] == pytest.approx(100 * (700 + 2 * 600) / 4000)
    assert a["hotspot_positive_percent"] == 55.0  # the hottest slide
    assert a["necrosis_fraction"] == pytest.approx((0.1 * 1 + 0.4 * 2) / 3)  # by tissue area
    assert a["nucleus_area_um2_cv"] == pytest.approx((0.3 * 1000 + 0.5 * 3000) / 4000)  # cells
    assert a["age"] == 60.0
    assert p.loc["B", "positive_percent"] == 0.0 and p.loc["B", "n_slides"] == 1


def test_aggregation_without_counts_or_areas():
    s = _slides()[["slide_id", "patient_id", "n_cells", "positive_percent", "cell_density_per_mm2"]]
    p = aggregate_patients(s).set_index("patient_id")
    assert p.loc["A", "positive_percent"] == pytest.approx((10 * 1000 + 40 * 3000) / 4000)
    assert p.loc["A", "cell_density_per_mm2"] == pytest.approx((1000 * 1000 + 1500 * 3000) / 4000)


def test_bad_slide_tables():
    with pytest.raises(ValueError, match="patient_id"):
        aggregate_patients(_slides().drop(columns="patient_id"))
    s = _slides()
    s.loc[1, "patient_id"] = None
    with pytest.raises(ValueError, match="no patient_id"):
        aggregate_patients(s)


def test_join_clinical_checks():
    patients = aggregate_patients(_slides())
    clinical = pd.DataFrame({"patient_id": ["A", "C"], "time": [10.0, 5.0], "event": [1, 0]})
    with pytest.warns(UserWarning) as rec:
        joined = join_clinical(patients, clinical)
    messages = " ".join(str(w.message) for w in rec)
    assert "['B']" in messages and "['C']" in messages
    assert joined["patient_id"].tolist() == ["A"] and joined["time"].tolist() == [10.0]
    with pytest.raises(ValueError, match="more than once"):
        join_clinical(patients, pd.concat([clinical, clinical]))
    with pytest.raises(ValueError, match="has no 'patient_id'"):
        join_clinical(patients, clinical.rename(columns={"patient_id": "case"}))
    assert np.isfinite(joined["positive_percent"]).all()


def test_join_clinical_ids_equal_as_text_are_one_patient():
    """Ids are compared as text: a clinical table with 7 and "7" lists patient 7 twice and
    is refused (it used to pass the check and give patient 7 two rows); the join's id column
    is text, matching slide ids written as text."""
    slides = _slides()
    slides["patient_id"] = slides["patient_id"].map({"A": "7", "B": "8"})
    patients = aggregate_patients(slides)
    clinical = pd.DataFrame({"patient_id": [7, "7", 8], "time": [1.0, 2.0, 3.0], "event": 1})
    with pytest.raises(ValueError, match=r"1 patients more than once: \['7'\]"):
        join_clinical(patients, clinical)
    joined = join_clinical(patients, clinical.iloc[[0, 2]])
    assert joined["patient_id"].tolist() == ["7", "8"] and joined["time"].tolist() == [1.0, 3.0]


def test_vascular_columns_aggregate_by_hand() -> None:
    """Vessels (issue 18): counts and MVP areas summed, densities pooled, MVP fraction
    weighted by tissue, the microvessel hotspot the highest of the case."""
    from napari_gbm.survival.patients import aggregate_patients

    slides = pd.DataFrame(
        {
            "patient_id": ["P1", "P1", "P2"],
            "n_cells": [100, 300, 50],
            "tissue_area_mm2": [1.0, 3.0, 2.0],
            "analysed_tissue_area_mm2": [1.0, 3.0, 2.0],
            "n_vessels": [10, 50, 4],
            "vessel_density_per_mm2": [10.0, 50 / 3, 2.0],
            "microvascular_area_mm2": [0.1, 0.0, 0.02],
            "mvp_fraction": [0.1, 0.0, 0.01],
            "microvessel_hotspot_density_per_mm2": [40.0, 90.0, 5.0],
        }
    )
    p = aggregate_patients(slides).set_index("patient_id")
    assert p.loc["P1", "n_vessels"] == 60
    assert p.loc["P1", "vessel_density_per_mm2"] == pytest.approx(60 / 4)
    assert p.loc["P1", "microvascular_area_mm2"] == pytest.approx(0.1)
    assert p.loc["P1", "mvp_fraction"] == pytest.approx((0.1 * 1 + 0.0 * 3) / 4)
    assert p.loc["P1", "microvessel_hotspot_density_per_mm2"] == 90.0
    assert p.loc["P2", "vessel_density_per_mm2"] == pytest.approx(2.0)
