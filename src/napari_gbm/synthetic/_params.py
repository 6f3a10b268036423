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

# -- CD31 (endothelium) IHC: vessels as DAB-brown objects -------------------------------
# Counted like Weidner's microvessel density: every brown endothelial cell or cluster
# clearly separate from its neighbours is one vessel; a lumen is not required. Each MVP
# lumen is one vessel: only its luminal endothelial layer is drawn CD31-positive (the
# outer layers of a glomeruloid tuft are drawn as CD31-negative pericyte nuclei), and the
# layout keeps those rings >= 8 um apart, so each is its own brown object.
#
# Vessels per mm^2 of each region (CD31+ profiles). Sources / choices:
# - normal brain 70: CD34 immunohistochemistry of non-icteric adult human brain counted
#   48-86 vessels/mm^2 (temporal cortex 48, hippocampus 68, basal ganglia 74, cerebellum
#   86; Int J Pathol Clin Res 1:003, table 1, clinmedjournals.org); chosen in that range.
# - cellular tumour 130; MVP region 150 capillaries plus its MVP lumens: GBM CD31 hotspot
#   MVD of ~50-150 vessels per 200x field of ~0.74 mm^2 (~70-200 /mm^2), the range the
#   issue gives (not re-checked here against one paper); the tumour average is chosen
#   inside it, so the densest 0.74 mm^2 disc holds ~100-150 vessels when it has MVP.
# - infiltrating edge 90: chosen between normal brain and tumour.
# - pseudopalisade 60, necrosis 5: chosen (hypoxic palisades are poorly vascularised;
#   necrotic foci keep only a few thrombosed vessels).
VESSEL_DENSITY_PER_MM2 = np.array([0.0, 130.0, 5.0, 60.0, 150.0, 90.0, 70.0])
# Candidate lattice density, thinned per region (must exceed the maximum above).
VESSEL_CANDIDATE_DENSITY_PER_MM2 = 400.0
# Fraction of larger vessels (open lumen) among a region's vessels; the rest are
# capillaries (chosen: GBM has many dilated thin-walled vessels, brain few).
VESSEL_LARGE_FRACTION = np.array([0.0, 0.15, 0.30, 0.10, 0.15, 0.08, 0.05])
# Capillary profiles: ring around a small lumen, collapsed (solid oval), or a streak
# (one elongated endothelial cell cut lengthwise); fractions sum to 1.
CAPILLARY_SPLIT = (0.40, 0.25, 0.35)
CAPILLARY_LUMEN_UM = (1.5, 4.0)  # lumen radius of capillary rings
CAPILLARY_WALL_UM = (1.8, 3.0)  # brown wall thickness
CAPILLARY_SOLID_UM = (3.0, 6.0)  # semi-major axis of collapsed capillaries
STREAK_UM = ((5.0, 12.0), (1.6, 2.8))  # semi-major, semi-minor axis of streaks
VESSEL_LUMEN_UM = (7.0, 22.0)  # lumen radius of larger vessels
VESSEL_WALL_UM = (2.0, 3.5)
VESSEL_ASPECT = ((1.0, 2.2), (1.0, 1.6))  # lumen aspect of capillaries, larger vessels
# Wall DAB OD (before a +-20 % texture); tissue background DAB stays < 0.05 (BG_HDAB).
VESSEL_DAB_OD = (0.45, 0.75)
# Hematoxylin of the elongated endothelial nucleus inside a streak (faint under DAB).
STREAK_NUCLEUS_H = 0.15
# Outline wobble (fraction of the radius) of drawn vessels; MVP rings are round.
VESSEL_WOBBLE = 0.16
# MVP lumens: the CD31-positive ring spans [lumen radius - inner, + outer] (um).
MVP_RING_UM = (1.5, 2.0)
# Smallest wall-to-wall gap between vessels (um): separate vessels stay separate
# objects at ~1 um/px after a small morphological closing.
VESSEL_GAP_UM = 8.0
# Bounding radius of the largest vessel (um): 22 * sqrt(1.6) + 3.5, with wobble.
VESSEL_MAX_RADIUS_UM = 35.0
# Ordinary nuclei keep their centres this far outside a vessel's outline (um).
VESSEL_NUCLEUS_CLEARANCE_UM = 4.0
# Hotspot of the truth: one 200x field of 0.74 mm^2 (a disc), centres on a 25 um grid.
HOTSPOT_FIELD_MM2 = 0.74
HOTSPOT_GRID_UM = 25.0
