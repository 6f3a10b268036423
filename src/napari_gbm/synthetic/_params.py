"""Constants of the synthetic glioblastoma slide: regions, nuclei, stains.

All sizes are in micrometres so the generator works at any pixel size.
"""

from __future__ import annotations

import numpy as np

GENERATOR_VERSION = "1.0.0"

# Region codes as stored in ``<stem>.regions.png``; the index is the code.
REGION_NAMES: tuple[str, ...] = (
    "background",
    "cellular_tumor",
    "necrosis",
    "pseudopalisade",
    "microvascular",
    "infiltrating",
    "normal_brain",
)
BACKGROUND, TUMOR, NECROSIS, PALISADE, MVP, INFILTRATING, NORMAL = range(7)

# Target nucleus density per region (nuclei / mm^2). Viable GBM 4000-5800 (REFERENCE.md).
DENSITY_PER_MM2 = np.array([0.0, 4900.0, 150.0, 7600.0, 3200.0, 2000.0, 1100.0])
# Candidate lattice density; every region thins it (so it must exceed the maximum).
CANDIDATE_DENSITY_PER_MM2 = 8800.0

# Ki-67 labelling: fraction of positive nuclei per region, and split of grades 1/2/3
# among positives.
POSITIVE_FRACTION = np.array([0.0, 0.30, 0.0, 0.35, 0.15, 0.10, 0.01])
GRADE_SPLIT = (0.40, 0.35, 0.25)
# Target mean DAB OD band per grade; QuPath thresholds 0.2 / 0.4 / 0.6 lie well outside.
DAB_BANDS = ((0.0, 0.04), (0.26, 0.34), (0.46, 0.54), (0.72, 0.86))
DAB_THRESHOLDS = (0.2, 0.4, 0.6)

# Nucleus morphology per region:
# (median area um^2, log-sd, min area, max area, aspect lo, aspect hi,
#  H&E hematoxylin OD lo, hi, boundary irregularity, cytoplasm eosin factor)
MORPHOLOGY = np.array(
    [
        [40, 0.3, 20, 80, 1.1, 1.5, 0.7, 1.0, 0.06, 1.0],  # background (unused)
        [58, 0.35, 28, 125, 1.1, 1.9, 0.75, 1.05, 0.10, 1.3],  # cellular tumour
        [16, 0.3, 9, 28, 1.0, 1.3, 1.05, 1.3, 0.07, 1.0],  # necrosis (pyknotic)
        [46, 0.25, 30, 75, 2.1, 3.2, 0.85, 1.15, 0.06, 1.15],  # pseudopalisade
        [52, 0.3, 28, 100, 1.2, 2.0, 0.75, 1.0, 0.08, 1.2],  # microvascular
        [45, 0.3, 25, 90, 1.1, 1.8, 0.7, 1.0, 0.08, 1.1],  # infiltrating
        [28, 0.2, 18, 40, 1.0, 1.25, 0.7, 0.95, 0.04, 0.7],  # normal brain (halo)
    ]
)
GIANT_FRACTION = np.array([0.0, 0.02, 0.0, 0.0, 0.01, 0.004, 0.0])
GIANT_AREA_UM2 = (150.0, 300.0)
# Hematoxylin of the H-DAB counterstain relative to H&E (REFERENCE: H OD ~0.4-0.8).
HDAB_H_SCALE = 0.62

# Background stain concentrations per region (hematoxylin, eosin, DAB) and the
# strength of the fibrillary texture. Lumens and glass are handled separately.
BG_HE = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.11, 0.25, 0.0, 0.40],  # cellular tumour: fibrillary eosinophilic processes
        [0.05, 0.31, 0.0, 0.30],  # necrosis: pale pink, granular
        [0.11, 0.23, 0.0, 0.40],
        [0.10, 0.27, 0.0, 0.35],
        [0.09, 0.22, 0.0, 0.45],  # infiltrating: loose neuropil
        [0.08, 0.22, 0.0, 0.50],  # normal brain: fibrillary neuropil
    ]
)
BG_HDAB = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.075, 0.0, 0.012, 0.35],
        [0.05, 0.0, 0.03, 0.25],
        [0.075, 0.0, 0.012, 0.35],
        [0.07, 0.0, 0.015, 0.3],
        [0.065, 0.0, 0.01, 0.4],
        [0.06, 0.0, 0.01, 0.45],
    ]
)
GLASS_OD = 0.022  # RGB ~243 off tissue

# Stain vectors (rows, RGB OD), Ruifrok / QuPath defaults, normalised below.
_H = np.array([0.65, 0.70, 0.29])
_E = np.array([0.2159, 0.8012, 0.5581])
_DAB = np.array([0.27, 0.57, 0.78])
STAIN_H = _H / np.linalg.norm(_H)
STAIN_E = _E / np.linalg.norm(_E)
STAIN_DAB = _DAB / np.linalg.norm(_DAB)
# Debris and slide-edge ink: near-neutral dark, slightly brown.
STAIN_DIRT = np.array([0.55, 0.58, 0.60]) / np.linalg.norm([0.55, 0.58, 0.60])

# Microvascular proliferation geometry (um).
MVP_CLUSTER_RADIUS_UM = (60.0, 140.0)
LUMEN_RADIUS_UM = (6.0, 17.0)
LUMEN_LAYER_UM = 5.0
LUMEN_NUCLEUS_SPACING_UM = 14.0

# Largest distance from a nucleus' owning block to any pixel it paints (um): ring
# nuclei around lumens sit up to ~50 um from the lumen centre, plus the nucleus itself.
MAX_REACH_UM = 75.0
