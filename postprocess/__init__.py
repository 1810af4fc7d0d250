"""postprocess: from a captured RAW pair to a dataset pair. Colour calibration, photometric β,
the Menon ISP, optical-flow alignment with constant-MTF warping, blur masks, the per-scene
pipeline (its stages in :mod:`postprocess.stages`), export in the ReLoBlur layout, and
verification on the twin. RAW pairs from other software are imported by
:mod:`acquisition.raw_import`."""
