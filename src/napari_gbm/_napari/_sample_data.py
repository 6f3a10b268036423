"""napari sample-data contributions: open the sample slides as the reader would."""

from __future__ import annotations

from napari_gbm._napari._layers import LayerData, slide_layer
from napari_gbm.samples import cmu1_path, synthetic_sample_path
from napari_gbm.slide import Slide


def cmu1_small_region() -> list[LayerData]:
    return [slide_layer(Slide(cmu1_path()), name="CMU-1 small region")]


def synthetic_he() -> list[LayerData]:
    return [slide_layer(Slide(synthetic_sample_path("he")), name="synthetic GBM H&E")]


def synthetic_ki67() -> list[LayerData]:
    return [slide_layer(Slide(synthetic_sample_path("hdab")), name="synthetic GBM Ki-67")]
