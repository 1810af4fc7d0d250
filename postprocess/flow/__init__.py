"""Geometric alignment flow between the two cameras of the rig (camera B onto camera S).

The paper (Li et al., AAAI 2023) aligns the blurred camera B onto the sharp camera S with an
optical flow computed on the scene's static reference pair using Pyflow, the Python wrapper of
Ce Liu's C++ coarse-to-fine variational flow (``Coarse2FineFlow``). :func:`pyflow_flow` is our
own implementation of that method (numba kernels + OpenCV filters); :func:`deepflow_flow` and
:func:`dis_flow` are OpenCV alternatives on the same pair; :func:`compute_flow` dispatches
by name (:data:`FLOW_METHODS`).

Convention (the twin's ground truth, ``RigTwin.flow_b_from_s()``)
-------------------------------------------------------------------
``flow`` is an (H, W, 2) float32 array in pixels; ``flow[y, x] = (dx, dy)`` such that
``reference(x, y)`` (camera S) and ``moving(x + dx, y + dy)`` (camera B) see the same scene
point. x points right, y down, the origin is the centre of the top-left pixel. The flow goes
FROM the reference TO the moving image, which is what
``cv2.remap(moving, x + dx, y + dy, cv2.INTER_LINEAR)`` needs to align ``moving`` onto
``reference``.

Inputs are (H, W, 3) RGB (channel order R, G, B) or (H, W) grey float images, roughly in
[0, 1] (α = 0.012 is tuned for that range), of equal size, all values finite.

Modules
-------
* :mod:`~postprocess.flow.methods`: the registry of methods by name and :func:`compute_flow`;
* :mod:`~postprocess.flow.pyflow`: our Pyflow, the method's driver, over
  :mod:`~postprocess.flow.features` (pyramid, features), :mod:`~postprocess.flow.system`
  (per-pixel solver kernels), :mod:`~postprocess.flow.sor` (red-black SOR),
  :mod:`~postprocess.flow.planar` (the fast system build) and
  :mod:`~postprocess.flow.reference` (numpy twins of the kernels, for the tests);
* :mod:`~postprocess.flow.opencv`: DeepFlow and DIS;
* :mod:`~postprocess.flow.visualise`: :func:`flow_to_png`, the colour wheel for the operator;
* :mod:`~postprocess.flow.metrics`: :func:`end_point_error`;
* :mod:`~postprocess.flow.common`: :class:`FlowInputError` and the input checks.
"""

from __future__ import annotations

import os

# Idle OpenMP workers sleep instead of spinning. On a shared 2-core machine spinning workers
# take the cores from the ones doing the work: a parallel region then costs ~1 ms instead of
# ~15 us. Must be set before numba starts its OpenMP pool (every submodule is imported after
# this line, the package first); a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from postprocess.flow.common import FlowInputError  # noqa: E402
from postprocess.flow.methods import DEFAULT_METHOD, FLOW_METHODS, METHODS, compute_flow  # noqa: E402
from postprocess.flow.metrics import end_point_error  # noqa: E402
from postprocess.flow.opencv import deepflow_flow, dis_flow  # noqa: E402
from postprocess.flow.pyflow import pyflow_flow  # noqa: E402
from postprocess.flow.visualise import flow_to_png  # noqa: E402

__all__ = [
    "FlowInputError",
    "FLOW_METHODS",
    "METHODS",
    "DEFAULT_METHOD",
    "pyflow_flow",
    "deepflow_flow",
    "dis_flow",
    "compute_flow",
    "flow_to_png",
    "end_point_error",
]
