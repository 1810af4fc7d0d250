"""postprocess: from a captured RAW pair to a dataset pair. Colour calibration, photometric β,
the Menon ISP, optical-flow alignment with constant-MTF warping, blur masks, the per-scene
pipeline, import of RAW pairs, export in the ReLoBlur layout, and verification on the twin."""
