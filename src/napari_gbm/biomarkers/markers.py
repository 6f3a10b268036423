"""Marker presets: what each glioma IHC marker stains, where its cells are graded, and
what the slide reports (the loss reading of ATRX is in :mod:`.marker_loss`).

A preset is a starting point, not a calibration: its compartment follows where the antigen
sits (nuclear, cytoplasmic, membranous), its DAB OD thresholds are QuPath's defaults (our
choice for every marker: the literature gives slide-level cut-offs, such as "strong nuclear
p53 in more than 10 % of tumour cells", not per-cell optical densities, which depend on the
antibody, protocol and scanner). ``docs/MARKERS.md`` has the table and the sources.

A *loss* marker (ATRX) is retained in the nuclei of normal cells and lost in tumour
nuclei with the mutation: the slide reports the fraction of tumour nuclei that are
negative, checked on internal controls (:func:`.marker_loss.loss_summary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from napari_gbm.biomarkers.ihc import (
    POSITIVITY_COMPARTMENTS,
    POSITIVITY_STATISTICS,
    PositivityParams,
)
from napari_gbm.biomarkers.marker_loss import (
    LOSS_KEYS,
    MARKER_CELL_COLUMNS,
    InternalControlParams,
    loss_summary,
)

__all__ = [
    "MARKERS",
    "MARKER_CELL_COLUMNS",
    "MarkerPreset",
    "get_marker",
    "marker_positivity",
    "marker_summary",
]

KINDS = ("cell", "vessel")
REPORTS = ("positive", "loss")

_QUPATH = (
    "QuPath positive cell detection: score compartments Nucleus/Cytoplasm/Cell DAB OD "
    "mean/max, thresholds 0.2/0.4/0.6 (qupath/qupath, PositiveCellDetection.java); "
    "Bankhead P et al., Sci Rep 2017;7:16878"
)


@dataclass(frozen=True)
class MarkerPreset:
    """One marker: what it stains and how its slides are read.

    Parameters
    ----------
    name : str
        The preset's name (``--marker``), lower case.
    target : str
        What the antibody stains, and where in the cell.
    kind : {"cell", "vessel"}, default "cell"
        ``"cell"``: every cell is graded in `compartment`; ``"vessel"``: the stain marks
        vessels (endothelium), read as vessel objects, not graded cells.
    compartment : {"nucleus", "cytoplasm", "cell", "membrane"} or None
        Where a cell is graded; None for a vessel marker.
    statistic : {"mean", "max"} or None
        Statistic of the compartment's DAB OD; None for a vessel marker.
    thresholds : tuple of float, default ()
        DAB OD thresholds of the cell grades (three: 1+/2+/3+, one: positive), as in
        :class:`~napari_gbm.biomarkers.ihc.PositivityParams`; empty for a vessel marker.
    reports : {"positive", "loss"}, default "positive"
        ``"positive"``: the positive fraction (labelling index, H-score); ``"loss"``: the
        negative fraction of tumour nuclei, checked on internal controls
        (:func:`loss_summary`).
    note : str, default ""
        How the slide-level result is read, in a sentence or two.
    sources : tuple of str, default ()
        Where the compartment, the reading and the thresholds come from.

    Raises
    ------
    ValueError
        For an unknown kind, report, compartment or statistic, or thresholds that do not
        fit the kind.
    """

    name: str
    target: str
    kind: str = "cell"
    compartment: str | None = None
    statistic: str | None = None
    thresholds: tuple[float, ...] = ()
    reports: str = "positive"
    note: str = ""
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.reports not in REPORTS:
            raise ValueError(f"reports must be one of {REPORTS}, got {self.reports!r}")
        if self.kind == "vessel":
            if self.compartment is not None or self.statistic is not None or self.thresholds:
                raise ValueError(
                    f"{self.name}: a vessel marker grades no cells (no compartment, "
                    "statistic or thresholds)"
                )
            return
        if self.compartment not in POSITIVITY_COMPARTMENTS:
            raise ValueError(
                f"{self.name}: compartment must be one of {POSITIVITY_COMPARTMENTS}, "
                f"got {self.compartment!r}"
            )
        if self.statistic not in POSITIVITY_STATISTICS:
            raise ValueError(
                f"{self.name}: statistic must be one of {POSITIVITY_STATISTICS}, "
                f"got {self.statistic!r}"
            )
        self.positivity()  # the thresholds are checked there

    def positivity(self) -> PositivityParams:
        """The cell grading of this marker.

        Returns
        -------
        PositivityParams
            Its compartment, statistic and thresholds.

        Raises
        ------
        ValueError
            For a vessel marker (it grades no cells).
        """
        if self.kind != "cell":
            raise ValueError(f"{self.name} is a {self.kind} marker: it grades no cells")
        return PositivityParams(
            compartment=self.compartment, statistic=self.statistic, thresholds=self.thresholds
        )

    def to_dict(self) -> dict[str, Any]:
        """The preset as a JSON-ready dictionary (tuples as lists)."""
        d = asdict(self)
        d["thresholds"] = list(self.thresholds)
        d["sources"] = list(self.sources)
        return d


def _cell(
    name: str, target: str, compartment: str, note: str, *sources: str, **kw: Any
) -> MarkerPreset:
    kw.setdefault("thresholds", PositivityParams().thresholds)
    return MarkerPreset(
        name=name,
        target=target,
        compartment=compartment,
        statistic="mean",
        note=note,
        sources=(*sources, _QUPATH),
        **kw,
    )


def _vessel(name: str, target: str, *sources: str) -> MarkerPreset:
    note = "vessel objects (microvessel density, vessel area), not graded cells"
    return MarkerPreset(name=name, target=target, kind="vessel", note=note, sources=sources)


_WHO = (
    "Louis DN et al., The 2021 WHO Classification of Tumors of the Central Nervous System: "
    "a summary, Neuro Oncol 2021;23:1231-1251"
)
_WEIDNER = (
    "Weidner N et al., Tumor angiogenesis and metastasis: correlation in invasive breast "
    "carcinoma, N Engl J Med 1991;324:1-8 (microvessel counting)"
)
_LEON = (
    "Leon SP, Folkerth RD, Black PM, Microvessel density is a prognostic indicator for "
    "patients with astroglial brain tumors, Cancer 1996;77:362-372"
)

#: the presets by name (``napari-gbm analyze --marker NAME``)
MARKERS: dict[str, MarkerPreset] = {
    m.name: m
    for m in (
        _cell(
            "ki67",
            "Ki-67 (MIB-1): nuclear antigen of cycling cells (G1 to M phase)",
            "nucleus",
            "Ki-67 labelling index = positive % of nuclei",
            "Johannessen AL, Torp SH, The clinical value of Ki-67/MIB-1 labeling index in "
            "human astrocytomas, Pathol Oncol Res 2006;12:143-147",
        ),
        _cell(
            "p53",
            "p53: nuclear; accumulates when TP53 carries a missense mutation",
            "nucleus",
            "strong nuclear staining in more than 10 % of tumour cells suggests a TP53 "
            "mutation: read the 3+ share (n_3plus / n_graded); 3+ (0.6 OD) as 'strong' is "
            "our choice",
            "Takami H et al., Revisiting TP53 mutations and immunohistochemistry: a "
            "comparative study in 157 diffuse gliomas, Brain Pathol 2015;25:256-265",
            _WHO,
        ),
        _cell(
            "olig2",
            "OLIG2: nuclear transcription factor of the oligodendroglial lineage, in "
            "nearly all diffuse glioma cells",
            "nucleus",
            "positive % of nuclei; normal oligodendrocytes are positive too",
            "Ligon KL et al., The oligodendroglial lineage marker OLIG2 is universally "
            "expressed in diffuse gliomas, J Neuropathol Exp Neurol 2004;63:499-509",
        ),
        _cell(
            "atrx",
            "ATRX: nuclear chromatin remodeller, kept in normal nuclei, lost in tumour "
            "nuclei with an ATRX mutation",
            "nucleus",
            "loss: negative share of tumour nuclei, valid only where internal controls "
            "(endothelial cells, lymphocytes, neurons, glia) stay positive; one threshold "
            "(negative / positive), 0.2 OD our choice",
            "Reuss DE et al., ATRX and IDH1-R132H immunohistochemistry with subsequent copy "
            "number analysis and IDH sequencing as a basis for an 'integrated' diagnostic "
            "approach, Acta Neuropathol 2015;129:133-146",
            "Ikemura M et al., Utility of ATRX immunohistochemistry in diagnosis of adult "
            "diffuse gliomas, Histopathology 2016;69:260-267 (internal controls)",
            "Ebrahimi A et al., ATRX immunostaining predicts IDH and H3F3A status in "
            "gliomas, Acta Neuropathol Commun 2016;4:60",
            thresholds=(0.2,),
            reports="loss",
        ),
        _cell(
            "idh1",
            "IDH1 R132H (clone H09): the mutant enzyme, strong in the cytoplasm, weaker "
            "in the nucleus",
            "cytoplasm",
            "positive % of tumour cells; convincing staining of tumour cells means IDH1 "
            "R132H (cytoplasmic staining of non-tumour tissue alone can be cross-reaction)",
            "Capper D et al., Monoclonal antibody specific for IDH1 R132H mutation, Acta "
            "Neuropathol 2009;118:599-601",
            "Capper D et al., Characterization of R132H mutation-specific IDH1 antibody "
            "binding in brain tumors, Brain Pathol 2010;20:245-254",
        ),
        _cell(
            "gfap",
            "GFAP: intermediate filament of astrocytes, in the cytoplasm and processes",
            "cytoplasm",
            "positive % of cells; the processes reach beyond the cell outline, where the "
            "positive pixel count measures them",
            "Eng LF, Ghirnikar RS, Lee YL, Glial fibrillary acidic protein: GFAP-thirty-one "
            "years (1969-2000), Neurochem Res 2000;25:1439-1451",
        ),
        _cell(
            "egfr",
            "EGFR: transmembrane receptor, at the cell membrane (overexpressed with EGFR "
            "amplification)",
            "membrane",
            "H-score and positive % of cells on the membrane ring "
            "(features.compartments.MEMBRANE_WIDTH_UM wide)",
            "Heimberger AB et al., Prognostic effect of epidermal growth factor receptor "
            "and EGFRvIII in glioblastoma multiforme patients, Clin Cancer Res "
            "2005;11:1462-1466",
            "Winje Hagen K, Torp SH, Prognostic significance of EGFR gene amplification and "
            "overexpression in diffuse astrocytomas, Open J Pathol 2012;2:71-80",
        ),
        _vessel("cd31", "CD31 (PECAM-1): endothelial cell membranes", _WEIDNER, _LEON),
        _vessel("cd34", "CD34: endothelial cells (and some progenitor cells)", _WEIDNER, _LEON),
    )
}


def get_marker(name: str) -> MarkerPreset:
    """The preset called `name` (any case).

    Parameters
    ----------
    name : str
        A key of :data:`MARKERS`.

    Returns
    -------
    MarkerPreset

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    preset = MARKERS.get(str(name).lower())
    if preset is None:
        raise ValueError(f"unknown marker {name!r}; the presets are {', '.join(MARKERS)}")
    return preset


def marker_positivity(
    marker: str | None = None,
    *,
    compartment: str | None = None,
    statistic: str | None = None,
    column: str | None = None,
    thresholds: tuple[float, ...] | None = None,
) -> PositivityParams:
    """The cell grading of a marker, with what was given explicitly overriding it.

    Each argument given wins over the preset, the preset over the defaults of
    :class:`~napari_gbm.biomarkers.ihc.PositivityParams`: ``compartment`` alone keeps the
    preset's statistic and thresholds, ``thresholds`` alone keeps its compartment. A
    vessel marker grades no cells; its slides' cells are graded as without a marker.

    Parameters
    ----------
    marker : str, optional
        A preset of :data:`MARKERS`.
    compartment, statistic : str, optional
        As in :class:`PositivityParams`.
    column : str, optional
        The graded column itself; not with `compartment` or `statistic`.
    thresholds : tuple of float, optional
        One or three DAB OD thresholds.

    Returns
    -------
    PositivityParams

    Raises
    ------
    ValueError
        For an unknown marker, `column` given with `compartment` or `statistic`, or
        invalid values (see :class:`PositivityParams`).
    """
    preset = get_marker(marker) if marker is not None else None
    base = preset.positivity() if preset is not None and preset.kind == "cell" else None
    t = thresholds if thresholds is not None else (base or PositivityParams()).thresholds
    if column is not None:
        if compartment is not None or statistic is not None:
            raise ValueError("give the graded column, or the compartment and statistic, not both")
        return PositivityParams(column=column, thresholds=t)
    return PositivityParams(
        compartment=compartment or (base.compartment if base else None),
        statistic=statistic or (base.statistic if base else None),
        thresholds=t,
    )


def marker_summary(
    marker: str | None,
    cells: pd.DataFrame | None = None,
    params: InternalControlParams | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The summary entries of a slide's marker.

    Parameters
    ----------
    marker : str or None
        A preset of :data:`MARKERS`, or None (no marker named).
    cells : pandas.DataFrame, optional
        The cell table (``positive_class`` and
        :data:`~.marker_loss.MARKER_CELL_COLUMNS`); needed for a loss marker.
    params : InternalControlParams, optional
        The internal controls of a loss marker; None uses the defaults.

    Returns
    -------
    entries : dict
        ``marker`` (its name or None), ``marker_preset`` (:meth:`MarkerPreset.to_dict` or
        None) and :data:`~.marker_loss.LOSS_KEYS` (None unless the marker reports loss).
    warnings : list of str
        From :func:`~.marker_loss.loss_summary`, or that no cell was graded.

    Raises
    ------
    ValueError
        For an unknown marker, or a loss marker without `cells` or their columns.
    """
    entries: dict[str, Any] = {"marker": None, "marker_preset": None}
    entries.update(dict.fromkeys(LOSS_KEYS))
    if marker is None:
        return entries, []
    preset = get_marker(marker)
    entries.update(marker=preset.name, marker_preset=preset.to_dict())
    if preset.reports != "loss":
        return entries, []
    if cells is None:
        raise ValueError(f"{preset.name} reports loss: give the cell table")
    if "positive_class" in cells.columns and not (cells["positive_class"].to_numpy() >= 0).any():
        return entries, [
            f"{preset.name}: no cell was graded (an H&E slide, or no DAB column): no loss reading"
        ]
    loss, warnings = loss_summary(cells, params, marker=preset.name.upper())
    entries.update(loss)
    return entries, warnings


def _preset_table(markers: Mapping[str, MarkerPreset]) -> str:
    """The presets as a Markdown table (docs/MARKERS.md is checked against it)."""
    rows = [
        "| marker | stains | kind | compartment | statistic | thresholds (DAB OD) | reports |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in markers.values():
        t = " / ".join(f"{v:g}" for v in m.thresholds) or "-"
        rows.append(
            f"| {m.name} | {m.target} | {m.kind} | {m.compartment or '-'} | "
            f"{m.statistic or '-'} | {t} | {m.reports} |"
        )
    return "\n".join(rows)
