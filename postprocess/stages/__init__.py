"""The stages of the per-scene pipeline, one module each; :mod:`postprocess.pipeline` runs them.

* :mod:`~postprocess.stages.calibrate`: a camera's colour calibration from its lightbox frame;
* :mod:`~postprocess.stages.scene`: once per scene, white balance, camera → sRGB matrix, the
  alignment flow S → B and β (the ``flow`` and ``scene_colour`` products);
* :mod:`~postprocess.stages.pairs`: each pair through the ISP, B warped onto S (``sharp`` and
  ``blurred`` products);
* :mod:`~postprocess.stages.masks`: the scene's LBFMG masks (``mask`` products);
* :mod:`~postprocess.stages.photometric`: β from aligned frames (used by scene and pairs);
* :mod:`~postprocess.stages.frames`: a stored RAW frame, checked, and its camera RGB;
* :mod:`~postprocess.stages.common`: the named errors, the records the stages hand on, and the
  product store (rows of ``products`` and their files).
"""
