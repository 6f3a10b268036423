"""Tables in and out (issue 14): event columns as people write them (one parser for
``napari-gbm stratify``, the cohort manifest and the Cohort dock), categorical covariates
with a reference level, text where numbers belong, empty and binary tables, and CSV
formula injection (every CSV/TSV written through napari_gbm.io.write_csv)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_gbm.cli import main
from napari_gbm.io import neutralise_formulas, read_csv, restore_formulas, write_csv
from napari_gbm.survival.stratify import run_stratify
from napari_gbm.survival.table_input import event_indicator, numeric_values

N = 80
FORMULA_ID = '=HYPERLINK("http://x","y")'


def _cohort(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A biomarker table and a clinical table (1/0 events, IDH Mutant/WT, age) of N
    patients whose survival depends on age and IDH."""
    rng = np.random.default_rng(seed)
    idh = rng.choice(["Mutant", "WT"], N, p=[0.3, 0.7])
    age = rng.normal(60.0, 10.0, N)
    ki67 = rng.gamma(4.0, 5.0, N)
    lin = 0.04 * (age - 60.0) - 0.8 * (idh == "Mutant") + 0.02 * (ki67 - 20.0)
    t = rng.exponential(12.0 * np.exp(-lin))
    c = rng.exponential(25.0, N)
    ids = [f"P{i:03d}" for i in range(N)]
    table = pd.DataFrame({"patient_id": ids, "positive_percent": ki67})
    clinical = pd.DataFrame(
        {
            "patient_id": ids,
            "time_months": np.round(np.minimum(t, c), 2) + 0.01,
            "event": (t <= c).astype(int),
            "age": np.round(age, 1),
            "idh": idh,
        }
    )
    return table, clinical


def _stratify(tmp: Path, clinical: pd.DataFrame, name: str, *extra: str) -> int:
    table, _ = _cohort()
    table.to_csv(tmp / "table.csv", index=False)
    clinical.to_csv(tmp / f"{name}.csv", index=False)
    return main(
        [
            "stratify", str(tmp / "table.csv"), "--clinical", str(tmp / f"{name}.csv"),
            "--time", "time_months", "--event", "event", "--cv-folds", "0",
            "--out", str(tmp / f"out_{name}"), *extra,
        ]
    )  # fmt: skip


def _summary(tmp: Path, name: str) -> pd.DataFrame:
    return read_csv(tmp / f"out_{name}" / "cox_summary.csv").set_index("covariate")


# --- event values ---------------------------------------------------------------------


def test_event_spellings_read_alike() -> None:
    words = pd.Series(
        ["yes", " No ", "DEAD", "alive", "Deceased", "living", "TRUE", "false", "1", "0",
         "1.0", "0.0", "y", "N", "died", "censored", None, "  "]
    )  # fmt: skip
    want = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, np.nan, np.nan]
    np.testing.assert_array_equal(event_indicator(words), want)
    np.testing.assert_array_equal(event_indicator(pd.Series([True, False])), [1.0, 0.0])
    np.testing.assert_array_equal(event_indicator(pd.Series([1.0, 0.0, np.nan])), [1, 0, np.nan])
    mixed = pd.Series([True, 0, "yes", 1.0], dtype=object)
    np.testing.assert_array_equal(event_indicator(mixed), [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"'os_event' of clin\.csv .*\['maybe', 'unknown'\] \(3"):
        event_indicator(
            pd.Series(["yes", "maybe", "unknown", "maybe"]), column="os_event", source="clin.csv"
        )
    with pytest.raises(ValueError, match=r"not an event indicator: \[2\.0\]"):
        event_indicator(pd.Series([1.0, 2.0]))  # R's 1 = censored, 2 = dead is not guessed


@pytest.mark.parametrize(
    ("event", "alive"),
    [("yes", "no"), (" Dead", "alive "), ("deceased", "LIVING"), ("True", "False"), (1.0, 0.0)],
)
def test_worded_events_give_the_same_hazard_ratios(
    event: object, alive: object, tmp_path: Path
) -> None:
    _, clinical = _cohort()
    assert _stratify(tmp_path, clinical, "ref", "--covariates", "age,positive_percent") == 0
    worded = clinical.astype({"event": object})
    worded["event"] = np.where(clinical["event"] == 1, event, alive)
    assert _stratify(tmp_path, worded, "worded", "--covariates", "age,positive_percent") == 0
    ref, got = _summary(tmp_path, "ref"), _summary(tmp_path, "worded")
    np.testing.assert_allclose(got["hazard_ratio"], ref["hazard_ratio"], rtol=1e-12)
    m = json.loads((tmp_path / "out_worded" / "metrics.json").read_text())
    assert m["n_events"] == int(clinical["event"].sum())


def test_unknown_event_value_is_refused_naming_column_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, clinical = _cohort()
    clinical = clinical.astype({"event": object})
    clinical["event"] = np.where(clinical["event"] == 1, "yes", "no")
    clinical.loc[7, "event"] = "maybe"
    assert _stratify(tmp_path, clinical, "clinical_maybe") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'event'" in err and "clinical_maybe.csv" in err and "['maybe'] (1 row)" in err
    assert not (tmp_path / "out_clinical_maybe" / "metrics.json").exists()


def test_missing_events_follow_the_dropna_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, clinical = _cohort()
    clinical = clinical.astype({"event": object})
    clinical["event"] = np.where(clinical["event"] == 1, "dead", "alive")
    clinical.loc[[3, 9], "event"] = ""
    assert _stratify(tmp_path, clinical, "blank", "--covariates", "age") == 2
    err = capsys.readouterr().err
    assert "2 patients have missing values {'event': 2}" in err and "--dropna" in err
    assert _stratify(tmp_path, clinical, "blank", "--covariates", "age", "--dropna") == 0
    m = json.loads((tmp_path / "out_blank" / "metrics.json").read_text())
    assert m["n"] == N - 2


# --- text where numbers belong ----------------------------------------------------------


def test_text_survival_times_are_refused_naming_column_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, clinical = _cohort()
    clinical = clinical.astype({"time_months": object})
    clinical.loc[2, "time_months"] = "twelve"
    clinical.loc[5, "time_months"] = "12 months"
    assert _stratify(tmp_path, clinical, "times") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "the time column 'time_months' of " in err and "times.csv" in err
    assert "['twelve', '12 months'] (2 rows)" in err
    # numbers written as text (spaces around) are numbers
    np.testing.assert_array_equal(
        numeric_values(pd.Series([" 12.5", "3", None])), [12.5, 3, np.nan]
    )


def test_a_covariate_mixing_numbers_and_text_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, clinical = _cohort()
    clinical = clinical.astype({"age": object})
    clinical.loc[4, "age"] = "unknown"
    assert _stratify(tmp_path, clinical, "ages", "--covariates", "age") == 2
    err = capsys.readouterr().err
    assert "the covariate column 'age' of " in err and "ages.csv" in err
    assert "mixes numbers and text ['unknown']" in err


# --- categorical covariates ---------------------------------------------------------------


def test_categorical_covariate_is_one_hot_against_its_most_frequent_level(
    tmp_path: Path,
) -> None:
    _, clinical = _cohort()
    assert (clinical["idh"] == "WT").sum() > (clinical["idh"] == "Mutant").sum()
    assert _stratify(tmp_path, clinical, "text", "--covariates", "age,idh") == 0
    manual = clinical.assign(idh_mutant=(clinical["idh"] == "Mutant").astype(int))
    assert _stratify(tmp_path, manual, "dummy", "--covariates", "age,idh_mutant") == 0
    text, dummy = _summary(tmp_path, "text"), _summary(tmp_path, "dummy")
    assert list(text.index) == ["age", "idh=Mutant (vs WT)"]
    row = text.loc["idh=Mutant (vs WT)"]
    assert row["reference"] == "WT" and bool(row["binary"])
    assert pd.isna(text.loc["age", "reference"])
    for col in ("coef", "hazard_ratio", "ci_lower", "ci_upper", "p"):
        assert row[col] == pytest.approx(dummy.loc["idh_mutant", col], rel=1e-9), col
    out = tmp_path / "out_text"
    m = json.loads((out / "metrics.json").read_text())
    assert m["covariates"] == ["age", "idh"]
    assert m["categorical"] == {
        "idh": {"reference": "WT", "levels": ["Mutant", "WT"], "columns": ["idh=Mutant (vs WT)"]}
    }
    report = (out / "report.md").read_text()
    assert f"| idh=Mutant (vs WT) | {row.hazard_ratio:.3g} | " in report and "| vs WT |" in report
    assert any("reference level 'WT'" in n for n in m["notes"])
    # the saved model takes the encoded columns
    from napari_gbm.survival.persist import load_model

    risk = read_csv(out / "risk.csv")["risk_score"].to_numpy()
    x = manual[["age", "idh_mutant"]].set_axis(["age", "idh=Mutant (vs WT)"], axis=1)
    np.testing.assert_allclose(load_model(out / "model").predict_risk(x), risk, rtol=1e-9)


def test_categories_with_three_levels_ties_and_yes_no_words(tmp_path: Path) -> None:
    table, clinical = _cohort()
    # three levels: the most frequent (B) is the reference, the others in name order
    clinical["site"] = np.array(["A", "B", "B", "C"] * (N // 4))
    # a tie (40 / 40): the reference is the first alphabetically
    clinical["sex"] = np.array([" M", "F "] * (N // 2))
    m = run_stratify(
        table, tmp_path / "a", time_col="time_months", event_col="event", clinical=clinical,
        covariates=["age", "site", "sex"], cv_folds=0,
    )  # fmt: skip
    assert m["categorical"]["site"]["reference"] == "B"
    assert m["categorical"]["sex"] == {
        "reference": "F", "levels": ["F", "M"], "columns": ["sex=M (vs F)"]
    }  # fmt: skip
    summary = read_csv(tmp_path / "a" / "cox_summary.csv")
    assert list(summary.covariate) == ["age", "site=A (vs B)", "site=C (vs B)", "sex=M (vs F)"]
    # a yes/no covariate is present vs absent (0/1), as a 0/1 column is
    words = clinical.assign(mgmt=np.where(clinical["idh"] == "WT", "No", "yes"))
    codes = clinical.assign(mgmt=(clinical["idh"] != "WT").astype(int))
    kw = {"time_col": "time_months", "event_col": "event", "cv_folds": 0}
    run_stratify(table, tmp_path / "w", clinical=words, covariates=["age", "mgmt"], **kw)
    run_stratify(table, tmp_path / "c", clinical=codes, covariates=["age", "mgmt"], **kw)
    w = read_csv(tmp_path / "w" / "cox_summary.csv")
    c = read_csv(tmp_path / "c" / "cox_summary.csv")
    assert list(w.covariate) == ["age", "mgmt"] and bool(w.binary[1])
    np.testing.assert_allclose(w.hazard_ratio, c.hazard_ratio, rtol=1e-12)
    # one level only, or an id-like text column: refused, naming the column
    with pytest.raises(ValueError, match=r"covariate column 'one'.*one value \['x'\]"):
        run_stratify(table, tmp_path / "x", clinical=clinical.assign(one="x"),
                     covariates=["one"], **kw)  # fmt: skip
    codes_as_text = clinical.assign(patient_code=[f"c{i}" for i in range(N)])
    with pytest.raises(ValueError, match=r"'patient_code'.*80 different text values"):
        run_stratify(
            table, tmp_path / "x", clinical=codes_as_text, covariates=["patient_code"], **kw
        )


# --- files that are not tables ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "is empty"),
        (b"\n  \n", "is empty"),
        (bytes(range(256)) * 8, "is not a text table: it holds binary data"),
        ("patient_id,age\nJosé,60\n".encode("latin-1"), "is not UTF-8 text"),
        (b"patient_id,time_months,event\n", "has no rows under its header"),
    ],
    ids=["empty", "blank-lines", "binary", "latin-1", "header-only"],
)
def test_a_file_that_is_no_table_exits_2_naming_it(
    content: bytes, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad_table.csv"
    bad.write_bytes(content)
    _, clinical = _cohort()
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    for argv in (
        [str(bad)],  # the table
        [str(tmp_path / "clinical.csv"), "--clinical", str(bad)],  # the clinical table
    ):
        rc = main(["stratify", *argv, "--time", "t", "--event", "e", "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2
        assert err.startswith("napari-gbm stratify: error: ") and err.count("\n") == 1, err
        assert str(bad) in err and says in err, err
    assert not (tmp_path / "o").exists()


def test_separators_are_found_from_the_first_lines(tmp_path: Path) -> None:
    from napari_gbm.survival.table_input import load_table

    quoted_id = FORMULA_ID.replace('"', '""')
    cases = {
        # European Excel: ';', with a comma inside a column name
        "semi.csv": "patient_id;time;Event (1=dead, 0=alive)\nP1;12,5;1\nP2;3;0\n",
        # R's write.table: spaces, quoted text
        "r.txt": '"patient_id" "time" "event"\n"P1" 12.5 1\n"P2" 3 0\n',
        # commas inside quoted cells
        "quoted.csv": f'patient_id,time,event\n"{quoted_id}",12.5,1\nP2,3,0\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        df = load_table(tmp_path / name)
        assert df.shape == (2, 3) and df.iloc[1, 0] == "P2", name
        assert df.attrs["source"] == str(tmp_path / name)
    assert load_table(tmp_path / "quoted.csv").patient_id[0] == FORMULA_ID
    semi = load_table(tmp_path / "semi.csv")
    assert list(semi.columns)[2] == "Event (1=dead, 0=alive)"
    assert semi.time.tolist() == [12.5, 3.0]  # ';' files: Excel's decimal comma
    (tmp_path / "semi_dot.csv").write_text("patient_id;time\nP1;12.5\nP2;3\n")
    assert load_table(tmp_path / "semi_dot.csv").time.dtype == np.float64  # or a point
    (tmp_path / "one.csv").write_text("patient_id\nP1\nP2\n")
    assert list(load_table(tmp_path / "one.csv").columns) == ["patient_id"]


def test_a_broken_parquet_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "t.parquet"
    bad.write_bytes(b"PAR1 not really")
    assert main(["stratify", str(bad), "--time", "t", "--event", "e", "--out", str(tmp_path)]) == 2
    assert f"{bad} is not a readable Parquet file" in capsys.readouterr().err


# --- the cohort manifest reads events and categories the same way ------------------------


def _manifest_cohort(tmp_path: Path, clinical: pd.DataFrame, name: str) -> dict | None:
    from napari_gbm.cohort import read_cohort_input
    from napari_gbm.cohort.tables import _stratify, _write_tables
    from napari_gbm.pipeline import AnalyzeParams

    table, _ = _cohort()
    manifest = clinical.assign(slide_path=[f"{p}.svs" for p in clinical.patient_id])
    manifest.to_csv(tmp_path / f"{name}.csv", index=False)
    cohort = read_cohort_input(tmp_path / f"{name}.csv")
    ki67 = table.set_index("patient_id")["positive_percent"]
    outcomes = {
        s.slide_id: {
            "status": "skipped",
            "summary": {"n_cells": 1000, "positive_percent": float(ki67[s.patient_id])},
        }
        for s in cohort.slides
    }
    out = tmp_path / name
    result = _write_tables(cohort, out, AnalyzeParams(), outcomes, time.perf_counter())
    return _stratify(cohort, result, out, None, None, ["positive_percent", "age", "idh"], "cox")


def test_cohort_manifest_reads_worded_events_and_categories(tmp_path: Path) -> None:
    _, clinical = _cohort()
    ref = _manifest_cohort(tmp_path, clinical, "codes")
    worded = clinical.astype({"event": object})
    worded["event"] = np.where(clinical["event"] == 1, "Deceased", "Living")
    got = _manifest_cohort(tmp_path, worded, "words")
    assert ref is not None and got is not None and got["n_events"] == ref["n_events"]
    a = read_csv(tmp_path / "codes" / "stratify" / "cox_summary.csv")
    b = read_csv(tmp_path / "words" / "stratify" / "cox_summary.csv")
    assert "idh=Mutant (vs WT)" in list(b.covariate)
    np.testing.assert_allclose(b.hazard_ratio, a.hazard_ratio, rtol=1e-12)
    worded.loc[0, "event"] = "maybe"
    with pytest.raises(ValueError, match=r"'event' of the manifest .*maybe\.csv.*\['maybe'\]"):
        _manifest_cohort(tmp_path, worded, "maybe")


# --- CSV formula injection ----------------------------------------------------------------


def test_write_csv_neutralises_formulas_and_keeps_numbers(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "id": [FORMULA_ID, "+1+2", "-cmd", "@SUM(A1)", "\tx", "'=x", "-1.5", "ok"],
            "value": [-1.5, -2.0, 3.0, -4.25, 0.0, -7.0, 8.0, -9.5],
            "count": np.arange(-4, 4),
            "=header": [True] * 8,
        }
    )
    for sep in (",", "\t"):
        path = write_csv(df, tmp_path / f"t{'.csv' if sep == ',' else '.tsv'}", sep=sep)
        raw = pd.read_csv(path, sep=sep, keep_default_na=False)  # as a spreadsheet sees it
        assert list(raw["id"]) == [
            "'" + FORMULA_ID, "'+1+2", "'-cmd", "'@SUM(A1)", "'\tx", "''=x", "-1.5", "ok",
        ]  # fmt: skip
        assert list(raw.columns) == ["id", "value", "count", "'=header"]
        assert raw["value"].dtype == np.float64 and raw["value"][0] == -1.5
        assert raw["count"].dtype == np.int64 and raw["count"][0] == -4
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[4].split(sep) == ["'@SUM(A1)", "-4.25", "-1", "True"]  # numbers as numbers
        pd.testing.assert_frame_equal(read_csv(path, sep=sep, keep_default_na=False), df)
    # the escaping is one-to-one, and leaves the frame given alone
    assert neutralise_formulas(df)["id"][0] == "'" + FORMULA_ID and df["id"][0] == FORMULA_ID
    cr = pd.DataFrame({"id": ["\rx"]})
    assert neutralise_formulas(cr)["id"][0] == "'\rx"
    pd.testing.assert_frame_equal(restore_formulas(neutralise_formulas(df)), df)
    cat = df.astype({"id": "category"})
    assert "'" + FORMULA_ID in list(neutralise_formulas(cat)["id"].cat.categories)


def test_risk_csv_holds_a_formula_id_as_text_and_the_dock_reads_it_back(tmp_path: Path) -> None:
    from napari_gbm.survival.results import read_results

    table, clinical = _cohort()
    for df in (table, clinical):
        df.loc[0, "patient_id"] = FORMULA_ID
        df.loc[1, "patient_id"] = "@evil"
    out = tmp_path / "out"
    run_stratify(
        table, out, time_col="time_months", event_col="event", clinical=clinical,
        covariates=["age", "idh"], cv_folds=0,
    )  # fmt: skip
    raw = pd.read_csv(out / "risk.csv")  # what a spreadsheet gets
    assert "'" + FORMULA_ID in set(raw.patient_id) and "'@evil" in set(raw.patient_id)
    assert FORMULA_ID not in set(raw.patient_id)
    assert raw["risk_score"].dtype == np.float64
    assert (out / "risk.csv").read_text().count("\"'=HYPERLINK(") == 1
    summary = pd.read_csv(out / "cox_summary.csv")
    assert summary["coef"].dtype == np.float64 and (summary["coef"] < 0).any()  # negative: a number
    # the Cohort dock reads the ids as they were
    res = read_results(out, table, clinical)
    assert FORMULA_ID in set(res.patients.patient_id)
    assert res.risk_of(FORMULA_ID) is not None and res.risk_of("@evil") is not None
    assert list(res.hazard_ratios.covariate) == ["age", "idh=Mutant (vs WT)"]


def test_failures_csv_and_exported_tables_are_neutralised(tmp_path: Path) -> None:
    from napari_gbm.cohort import Cohort, CohortSlide
    from napari_gbm.cohort.tables import _write_tables
    from napari_gbm.export import export_table
    from napari_gbm.pipeline import AnalyzeParams

    slide = CohortSlide(slide_id="=cmd|' /C calc'!A0", path=tmp_path / "x.svs", patient_id="+P1")
    outcomes = {slide.slide_id: {"status": "failed", "error_type": "SlideError", "message": "-bad"}}
    _write_tables(Cohort((slide,), (), tmp_path), tmp_path, AnalyzeParams(), outcomes, 0.0)
    raw = pd.read_csv(tmp_path / "failures.csv", keep_default_na=False)
    assert raw.loc[0, ["slide_id", "patient_id", "message"]].tolist() == [
        "'=cmd|' /C calc'!A0", "'+P1", "'-bad",
    ]  # fmt: skip
    assert pd.read_parquet(tmp_path / "failures.parquet").slide_id[0] == slide.slide_id

    cells = pd.DataFrame(
        {"slide_id": ["@SUM(1+1)*cmd"] * 3, "centroid_x_um": [-1.5, 2.0, -3.25], "n": [-1, 0, 1]}
    )
    for ext, sep in ((".csv", ","), (".tsv", "\t")):
        for naming in ("napari_gbm", "qupath"):
            path = export_table(cells, tmp_path / f"cells_{naming}{ext}", naming=naming)
            raw = pd.read_csv(path, sep=sep)
            assert set(raw.iloc[:, 0]) == {"'@SUM(1+1)*cmd"}
            assert raw.iloc[:, 1].dtype == np.float64 and raw.iloc[0, 1] == -1.5
            assert raw.iloc[:, 2].dtype == np.int64 and raw.iloc[0, 2] == -1
    parquet = export_table(cells, tmp_path / "cells.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), cells)  # Parquet: untouched
