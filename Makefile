# Two commands do all set-up on a fresh machine (see README Quickstart):
#   make demo   -- create .venv, simulate a phantom cine, reconstruct it, write images + GIF, print PSNR/SSIM
#   make test   -- create .venv and run the test-suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_out
DEMO_METHOD ?= dainr
# `fast` on a machine with a CUDA GPU, the smaller `cpu` preset otherwise (evaluated once the venv exists).
DEMO_PRESET ?= $(shell $(BIN)/python -c "import torch; print('fast' if torch.cuda.is_available() else 'cpu')")
# The CPU build of PyTorch (extra "cpu"); set EXTRAS=test for an environment with a CUDA torch already present.
EXTRAS ?= cpu,test

.PHONY: venv demo test clean

$(BIN)/dainr: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

venv: $(BIN)/dainr

demo: venv
	mkdir -p $(DEMO_DIR)
	$(BIN)/dainr simulate --source phantom --matrix 96 --frames 16 --coils 8 --spokes 13 --snr 200 \
		--traj goldenangle --seed 0 -o $(DEMO_DIR)/raw.h5 --truth $(DEMO_DIR)/truth.npy
	$(BIN)/dainr recon $(DEMO_DIR)/raw.h5 -o $(DEMO_DIR)/adjoint.h5 --method adjoint --truth $(DEMO_DIR)/truth.npy
	$(BIN)/dainr recon $(DEMO_DIR)/raw.h5 -o $(DEMO_DIR)/cgsense.h5 --method cgsense --truth $(DEMO_DIR)/truth.npy
	$(BIN)/dainr recon $(DEMO_DIR)/raw.h5 -o $(DEMO_DIR)/images.h5 --method $(DEMO_METHOD) --preset $(DEMO_PRESET) \
		--truth $(DEMO_DIR)/truth.npy --preview $(DEMO_DIR)/preview.gif --report $(DEMO_DIR)/report.json

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
