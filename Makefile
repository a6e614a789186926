# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3 || command -v python)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# The second pass runs the CUDA backend's tests in Numba's CUDA simulator (no GPU needed).
test: $(STAMP)
	$(PY) -m pytest
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q tests/test_backend.py tests/test_cuda_kernels.py \
		tests/test_cuda_train.py tests/test_cuda_device.py tests/test_cuda_bench.py -k cuda

demo: $(STAMP)
	$(PY) -m rnnkit.demo

clean:
	rm -rf $(VENV) build *.egg-info
