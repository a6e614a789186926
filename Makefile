# Two commands on a fresh machine: `make demo` and `make test`; `make check` while editing.
PYTHON ?= $(shell command -v python3 || command -v python)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# Everything (what CI runs, .ci/run). The second pass runs the CUDA backend's tests in Numba's
# CUDA simulator (no GPU needed).
test: $(STAMP)
	$(PY) -m pytest
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q tests/test_backend.py tests/test_adaptive.py \
		tests/test_cuda_kernels.py tests/test_cuda_train.py tests/test_cuda_device.py tests/test_cuda_bench.py \
		tests/test_beam.py -k cuda

# The inner loop: every test but those marked slow (cold compiles, MPI, SLURM, the demo, runs in
# subprocesses; pyproject.toml), in under 3 minutes on 2 cores with the kernels cached.
check: $(STAMP)
	$(PY) -m pytest -m "not slow"

demo: $(STAMP)
	$(PY) -m rnnkit.demo

clean:
	rm -rf $(VENV) build *.egg-info
