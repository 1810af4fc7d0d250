# `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

venv: $(STAMP)

# The CPU build of torch that lies on this machine's disk goes in first, so that the
# project's `torch>=2.3` requirement is already met and no CUDA build is downloaded.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest

# The main job, as far as it is built (SQLite in var/, the simulated rig):
#  1. create the database;
#  2. simulate a full-resolution scene session on the digital twin (DNG + ground truth + previews);
#  3. plan the exposures (Eq. 2) for the simulated rig, capture a lightbox, and capture a scene
#     (whiteboard, reference, 5 pairs) through the real drivers: the BNC 575 emulator on a pty and
#     two simulated GenICam cameras. --resume makes a second `make demo` a no-op, not an error;
#  4. post-process the captured scene (calibration, colour, beta, Menon ISP, flow + CMTF alignment,
#     LBFMG masks; products already made are reused) and export it in ReLoBlur's layout; check
#     every stage against the twin's ground truth (verify-pipeline);
#  5. train, deblur and evaluate a smoke-sized LBAG on twin pairs.
demo: $(STAMP)
	$(BIN)/reloblur db upgrade
	$(BIN)/reloblur simulate --preset car --pairs 3 --out var/demo/car --overwrite
	@echo "twin previews (blurred | sharp | true mask): var/demo/car/preview/"
	$(BIN)/reloblur plan --rig configs/rigs/twin.yaml
	$(BIN)/reloblur capture-lightbox --rig configs/rigs/twin.yaml --exposure-ms 1.8 --nd 0.125
	$(BIN)/reloblur capture --rig configs/rigs/twin.yaml --scene demo-street --pairs 5 --sharp-blur 2.5 --resume
	@echo "captured RAW pairs (DNG): var/raw/twin/demo-street/ ; database: var/reloblur.db"
	$(BIN)/reloblur process --scene demo-street --params configs/pipeline.yaml
	$(BIN)/reloblur export --out var/demo/reloblur_export --test-scenes demo-street --overwrite
	@echo "aligned pairs and blur masks in ReLoBlur's layout: var/demo/reloblur_export/"
	$(BIN)/reloblur verify-pipeline --preset car --pairs 3
	# Deblurring, smoke-sized: a 1-ResBlock LBAG trained for 20 steps on twin pairs (seconds on
	# a CPU; its numbers only show the wiring), then deblur and score a twin test split.
	$(BIN)/reloblur export-twin-dataset --out var/demo/twin_dataset --overwrite
	$(BIN)/reloblur train --config configs/tiny_twin.yaml --overwrite
	$(BIN)/reloblur deblur var/demo/twin_dataset/dataset/test --checkpoint var/runs/tiny_twin/checkpoints/step_0000020.pt --out var/demo/deblurred
	$(BIN)/reloblur evaluate --pred var/demo/deblurred --gt var/demo/twin_dataset/dataset/test --masks var/demo/twin_dataset/masks/test --out-csv var/demo/metrics.csv

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
