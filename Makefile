# Two commands do all set-up on a fresh machine (see README Quickstart):
#   make demo   -- create .venv, simulate a phantom cine, reconstruct it with the adjoint, CG-SENSE and DA-INR, write
#                  images + GIF + reports, print a table of their PSNR/SSIM and times
#   make test   -- create .venv and run the test-suite
# and, for interoperability with the C++ ISMRMRD library and Gadgetron's client (README "Gadgetron"):
#   make interop -- build the C++ MRD tools once into .mrd-tools/ (git-ignored; minutes), run tests/interop with them
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_out
DEMO_METHOD ?= dainr
# Empty: dainr recon's own choice (`fast` with a CUDA GPU, the smaller `cpu` preset without one; it says which).
DEMO_PRESET ?=
# The CPU build of PyTorch (extra "cpu"); set EXTRAS=test for an environment with a CUDA torch already present.
EXTRAS ?= cpu,test

# Where `make interop` builds the C++ MRD tools (ISMRMRD 1.15's utilities, gadgetron_ismrmrd_client), and how.
MRD_TOOLS ?= .mrd-tools
MRD_TOOLS_BUILD ?= ../shared/tools/build-mrd-cpp-tools
INTEROP_TESTS := tests/interop tests/gadget/test_gadget_cpp_header.py

.PHONY: venv demo test interop clean

$(BIN)/dainr: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

venv: $(BIN)/dainr

demo: venv
	mkdir -p $(DEMO_DIR)
	$(BIN)/dainr simulate --source phantom --matrix 96 --frames 16 --coils 8 --spokes 13 --snr 200 \
		--traj goldenangle --seed 0 -o $(DEMO_DIR)/raw.h5 --truth $(DEMO_DIR)/truth.npy --overwrite
	$(BIN)/dainr recon $(DEMO_DIR)/raw.h5 -o $(DEMO_DIR)/adjoint.h5 --method adjoint --truth $(DEMO_DIR)/truth.npy \
		--report $(DEMO_DIR)/adjoint.json --overwrite
	$(BIN)/dainr recon $(DEMO_DIR)/raw.h5 -o $(DEMO_DIR)/cgsense.h5 --method cgsense --truth $(DEMO_DIR)/truth.npy \
		--report $(DEMO_DIR)/cgsense.json --overwrite
	$(BIN)/dainr recon $(DEMO_DIR)/raw.h5 -o $(DEMO_DIR)/images.h5 --method $(DEMO_METHOD) \
		$(if $(DEMO_PRESET),--preset $(DEMO_PRESET)) --truth $(DEMO_DIR)/truth.npy --preview $(DEMO_DIR)/preview.gif \
		--report $(DEMO_DIR)/report.json --overwrite
	$(BIN)/dainr compare $(DEMO_DIR)/adjoint.json $(DEMO_DIR)/cgsense.json $(DEMO_DIR)/report.json

test: venv
	$(BIN)/python -m pytest -q

# A failed tool build (no apt, no compiler, no ../shared) is one line and skipped tests, not a failure; tools that
# built must pass the tests. The build script is idempotent: a second run returns at once.
interop: venv
	@if "$(MRD_TOOLS_BUILD)" "$(MRD_TOOLS)" > "$(MRD_TOOLS).log" 2>&1; then \
		tools="$(abspath $(MRD_TOOLS))"; echo "interop: C++ MRD tools ready in $(MRD_TOOLS)/bin"; \
	else \
		tools="$(abspath $(MRD_TOOLS)).unbuilt"; last=$$(tail -n 1 "$(MRD_TOOLS).log"); \
		echo "interop: the C++ MRD tools could not be built ($(MRD_TOOLS_BUILD) failed$${last:+: $$last}; log in $(MRD_TOOLS).log): the interop tests are skipped"; \
	fi; \
	DAINR_MRD_TOOLS="$$tools" $(BIN)/python -m pytest -q -rs $(INTEROP_TESTS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
