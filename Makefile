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

# The console's browser tests drive Debian's Chromium: installed here when missing and possible
# (as root with apt-get); without it those tests skip and say why.
test: $(STAMP) lint
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "no Chromium: the console's browser tests will skip"
	$(BIN)/python -m pytest

# The main job (SQLite in var/, the simulated rig, jobs on a local Dask cluster):
#  1. create the database; simulate a full-resolution scene session on the digital twin (DNG +
#     ground truth + previews); plan the exposures (Eq. 2) for the simulated rig;
#  2. deblur with the shipped model (deblur/weights/lbag_twin_cpu.pt, trained on the CPU with
#     configs/lbag_cpu.yaml); `make demo TRAIN=1` retrains it here first (about an hour), and
#     CHECKPOINT=path/to/lbag.pt uses another;
#  3. `reloblur demo`: start the lab service (FastAPI + Dask LocalCluster) and, through its REST
#     API, capture a lightbox and a scene (whiteboard, reference, 5 pairs) on the simulated rig
#     through the real drivers (BNC 575 emulator on a pty, simulated GenICam cameras),
#     post-process it (calibration, colour, beta, Menon ISP, flow + CMTF alignment, LBFMG masks),
#     export it in ReLoBlur's layout, deblur it with LBAG, and print the metrics table and where
#     the before/after images are. A second `make demo` resumes and reuses what exists;
#  4. check every post-processing stage against the twin's ground truth (verify-pipeline).
SHIPPED_CHECKPOINT := deblur/weights/lbag_twin_cpu.pt
TRAINED_CHECKPOINT := var/runs/lbag_cpu/model.pt
ifeq ($(TRAIN),1)
CHECKPOINT ?= $(TRAINED_CHECKPOINT)
else
CHECKPOINT ?= $(SHIPPED_CHECKPOINT)
endif

demo: $(STAMP) $(CHECKPOINT)
	$(BIN)/reloblur db upgrade
	$(BIN)/reloblur simulate --preset car --pairs 3 --out var/demo/car --overwrite
	@echo "twin previews (blurred | sharp | true mask): var/demo/car/preview/"
	$(BIN)/reloblur plan --rig configs/rigs/twin.yaml
	$(BIN)/reloblur demo --checkpoint $(CHECKPOINT) --scene demo-street --pairs 5
	$(BIN)/reloblur verify-pipeline --preset car --pairs 3

# Retrain the shipped model's recipe (TRAIN=1): about an hour on 2 CPU cores.
$(TRAINED_CHECKPOINT): $(STAMP) configs/lbag_cpu.yaml
	$(BIN)/reloblur train --config configs/lbag_cpu.yaml --overwrite
	$(BIN)/reloblur export-model "$$(ls var/runs/lbag_cpu/checkpoints/step_*.pt | tail -1)" \
		--out $@ --notes "reloblur train --config configs/lbag_cpu.yaml"

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
