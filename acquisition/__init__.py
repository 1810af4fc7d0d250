"""acquisition: the capture rig. The Eq. 2 exposure planner, the BNC 575 facts and driver, the
camera interface, rig backends found by entry point (GenICam through harvesters here; the
simulator and third parties elsewhere), rig files, and the capture protocol into DNG + DB.
It never imports the simulator."""
