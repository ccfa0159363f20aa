# distilserve — every target wraps the CLI or pytest. Two commands for a newcomer:
#   make serve   # virtualenv + install + build the default model if missing + serve on 127.0.0.1:8000
#   make test    # the whole test suite (unit, integration with real Triton and Ray, e2e)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# torch first and pinned: a looser spec pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install serve up down model test test-lanes test-unit test-integration test-e2e lint lint-docker deploy-config check \
        bench-distill bench bench-batch bench-rollback loadtest gpu-check clean

install: $(VENV)/.installed

# torch through pip (it finds this machine's local CPU wheel), then the rest through uv, which
# resolves and fetches in parallel: 13 s instead of about 6 minutes here from a cold cache, the
# same versions (compared with `pip freeze`). TORCH_SPEC is repeated so uv keeps that torch.
# Should uv fail (it reads neither pip.conf nor its index settings), pip installs the rest.
# --compile-bytecode: uv, unlike pip, leaves packages without .pyc files, and where
# PYTHONDONTWRITEBYTECODE is set (as on these machines) every process then compiles Ray and
# transformers again (import ray 1.9 s instead of 1.0 s; ray, serve and transformers 9.5 s instead
# of 4.9 s), in each Ray worker, replica and CLI call. With it, CI took 1,545 s instead of 2,364 s
# (benchmarks/results/ci-time-20261202/).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" uv
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode "$(TORCH_SPEC)" -e '.[dev]' \
	  || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" -e '.[dev]'
	touch $@

model: install
	$(BIN)/distilserve distill teacher

serve: install
	$(BIN)/distilserve serve --port $(PORT)

up: install
	$(BIN)/distilserve up --port $(PORT)

down: install
	$(BIN)/distilserve down

# The unit tier first, in two worker processes (pytest-xdist: pure tests, no servers; 83 s
# instead of 114 s here), then integration and e2e in one process: those start real servers and
# are sensitive to load. Both always run; the target fails if either did.
test: install
	$(BIN)/python -m pytest -q -n 2 tests/unit; unit=$$?; \
	$(BIN)/python -m pytest -q --durations=20 tests/integration tests/e2e; rest=$$?; \
	exit $$(( unit || rest ))

# The same suite as two pytest processes side by side (tests/lanes.py), each with its own local
# Ray: about 0.7 of the time, but in three CI rehearsals of 2026-12-02 each failed a different test
# under the two lanes' load (benchmarks/results/ci-time-20261202/), so `make test` is one process.
test-lanes: install
	$(BIN)/python -m tests.lanes

test-unit: install
	$(BIN)/python -m pytest -q -n 2 tests/unit

test-integration: install
	$(BIN)/python -m pytest -q tests/integration

test-e2e: install
	$(BIN)/python -m pytest -q tests/e2e

lint: install
	$(BIN)/ruff check .

lint-docker: install
	$(BIN)/hadolint Dockerfile.gpu

# Regenerate deploy/serve_config.yaml and the RayService from deploy/cluster.yaml.
deploy-config: install
	$(BIN)/distilserve deploy-config --out deploy/serve_config.yaml --rayservice deploy/rayservice.yaml

URL   ?= http://127.0.0.1:$(PORT)
MODEL ?= sentiment
check: install
	$(BIN)/distilserve check --url $(URL) --model $(MODEL) --junit runs/check.xml

# Benchmarks measure speed on this machine; they are not tests.
bench-distill: install
	$(BIN)/python scripts/bench_distill.py

bench-batch: install
	$(BIN)/python loadtests/bench_batch.py --rows 2000

bench-rollback: install
	$(BIN)/python loadtests/bench_rollback.py --repo model_repository --users 60 --rollbacks 6

# Load tests drive a running `make serve` on 127.0.0.1 (SHAPE=steady|step|ramp|spike).
SHAPE    ?= step
DURATION ?= 60
VERSION  ?= 1
loadtest: install
	$(BIN)/python -m loadtests.run_locust --host http://127.0.0.1:$(PORT) --shape $(SHAPE) --duration $(DURATION) --out runs/loadtest/$(SHAPE)

# Serving overhead (raw / Triton direct / stack / Serve+torch) and autoscaling; run on an idle machine.
bench: install
	$(BIN)/python -m loadtests.bench_overhead --version $(VERSION) --concurrency 1,2,4,5,6,8,16 --out runs/bench/overhead
	$(BIN)/python -m loadtests.bench_autoscale --version $(VERSION) --levels 10,100,1000 --duration 90 --tail 30 --out runs/bench/autoscale

gpu-check: install
	scripts/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
