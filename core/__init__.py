"""core: the shared contracts. Settings, database models and sessions, migrations' runner, the
atomic file store, DNG I/O, optics maths, the sRGB curve, the training-sample shape, job records,
backups. It imports nothing of ours but the migrations."""

__version__ = "0.1.0"
