"""Dock widgets (magicgui + Qt). The only part of napari-gbm that imports Qt."""
