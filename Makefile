# convbench: `make run` and `make test` set everything up on a fresh machine first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export MLFLOW_DISABLE_TELEMETRY := true

# Which requirement set: cuda (NVIDIA), rocm (AMD) or cpu, detected; PLATFORM=cpu|cuda|rocm forces one.
PLATFORM ?= $(shell bash requirements/platform.sh detect)
ifeq ($(filter $(PLATFORM),cpu cuda rocm),)
$(error PLATFORM=$(PLATFORM) is not a platform; valid: cpu, cuda, rocm)
endif
STAMP := $(VENV)/.installed-$(PLATFORM)

.PHONY: setup run smoke test test-all compile-check check-kernel bench-layers report ceilings ui server clean gpu-check gpu-check-rehearsal gpu-wheels

setup: $(STAMP)

# One pip call for the whole pinned set of the platform (requirements/$(PLATFORM).txt), so torch,
# torchvision and CuPy come from one consistent resolution. A venv set up for another platform is
# made afresh: pip keeps an installed torch that satisfies the pins (2.13.0+cpu satisfies ==2.13.0).
$(STAMP): requirements/$(PLATFORM).txt requirements/common.txt constraints.txt pyproject.toml
	@if ls $(VENV)/.installed-* 2>/dev/null | grep -qv -- '-$(PLATFORM)$$'; then \
		echo "$(VENV) holds another platform's set ($$(cd $(VENV) && ls .installed-*)); making it afresh for $(PLATFORM)"; \
		rm -rf $(VENV); fi
	$(if $(filter cuda,$(PLATFORM)),bash requirements/platform.sh check-driver)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(addprefix --extra-index-url ,$(shell bash requirements/platform.sh torch-index $(PLATFORM))) \
		-c constraints.txt -r requirements/$(PLATFORM).txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The product card's sweep: one MLflow parent run, one child job per algorithm.
run: setup
	$(PY) run.py -m algo=im2col,kn2row,scalar $(ARGS)

# The same sweep with the shortest protocol (seconds per job).
smoke: setup
	$(PY) run.py -m algo=im2col,kn2row,scalar bench=smoke $(ARGS)

test: setup compile-check
	$(PY) -m pytest

test-all: setup compile-check
	$(PY) -m pytest -m ""

compile-check:
	bash hip/compile_check.sh

# Your own GEMM kernel file checked on the emulator, no GPU needed (docs/your-kernel.md):
#   make check-kernel SOURCE=my_gemm.hip [TILE=16] [TILE_MACRO=TILE_WIDTH] [FUNCTION=name] [BLOCK_TILE=64,64]
export SOURCE TILE TILE_MACRO FUNCTION BLOCK_TILE
check-kernel: setup
	@test -n "$$SOURCE" || { echo "make check-kernel needs SOURCE=path/to/your_kernel.hip (template: hip/custom/template.hip)" >&2; exit 2; }
	$(PY) -m experiments.harness.check_kernel "$$SOURCE" --tile "$${TILE:-16}" $${TILE_MACRO:+--tile-macro "$$TILE_MACRO"} \
		$${FUNCTION:+--function "$$FUNCTION"} $${BLOCK_TILE:+--block-tile "$$BLOCK_TILE"} $(ARGS)

bench-layers: setup
	$(PY) -m experiments.bench.layers $(ARGS)

# The first command on a GPU machine (experiments/bench/gpu_check.py), fitted to BUDGET_S seconds: the GPU
# tests, the card's sweep, bench-ladder, bench-layers, each stopped at its share, into
# results/<date>-gpu-check-<device>.md. PYTHON=/path/to/python: from that environment, installing nothing.
# Without a GPU it stops at once, before any set-up, and says how to rehearse it: gpu-check-rehearsal runs
# every part on the emulator at tiny sizes (any CPU machine).
BUDGET_S ?= 420
gpu-check:
ifeq ($(origin PYTHON),command line)
	$(PYTHON) -m experiments.bench.gpu_check --budget-s $(BUDGET_S) $(ARGS)
else
	@if [ "$(PLATFORM)" = cpu ]; then echo "make gpu-check needs an NVIDIA GPU (a working nvidia-smi, driver >= 580) or an AMD GPU (ROCm 7); this machine has neither (PLATFORM=cpu). To rehearse it here, every part on the emulator at tiny sizes: make gpu-check-rehearsal" >&2; exit 2; fi
	$(MAKE) --no-print-directory setup
	$(PY) -m experiments.bench.gpu_check --budget-s $(BUDGET_S) $(ARGS)
endif

gpu-check-rehearsal: setup
	$(PY) -m experiments.bench.gpu_check --rehearse $(ARGS)

# For a GPU machine without internet (its torch and CuPy installed): here, with internet, the wheels it
# lacks (requirements/gpu_wheels.py says how to install them there). HAVE: its `pip list --format=freeze`;
# TARGET_PYTHON: its Python version.
HAVE ?=
TARGET_PYTHON ?= 3.12
gpu-wheels:
	$(PYTHON) requirements/gpu_wheels.py --python-version $(TARGET_PYTHON) $(if $(HAVE),--have '$(HAVE)') --out gpu-wheels $(ARGS)

.PHONY: bench-sparsity bench-grouped
# Density sweep 1.0 -> 0.05 on resnet18's layers: dense GEMM vs CSR SpMM, and the crossover density.
bench-sparsity: setup
	$(PY) -m experiments.bench.sparsity $(ARGS)

# mobilenet_v2, shufflenet_v2_x1_0, resnext50_32x4d end to end and per grouped layer vs PyTorch eager.
bench-grouped: setup
	$(PY) -m experiments.bench.grouped $(ARGS)

.PHONY: bench-pruning bench-bad-inputs setup-ray
# Every bad input we know of, given to run.py single and as a sweep: exit codes, tracebacks, messages.
# ARGS="--out results/$$(date +%F)-bench-bad-inputs.md"
bench-bad-inputs: setup
	$(PY) -m experiments.bench.bad_inputs $(ARGS)

# The optional Ray launcher (conf/hydra/launcher/ray.yaml says why the plugin comes without its dependencies).
setup-ray: setup
	$(PY) -m pip install -q -c constraints.txt 'ray[default]==2.60.0'
	$(PY) -m pip install -q --no-deps hydra-ray-launcher==1.2.2

.PHONY: bench-pruning
# resnet18 output-channel pruning at 25/50/75% (MAC ratio beside the measured speedup), fp32/fp16/int8, and the
# accuracy cost of every pruning kind and precision on digits_cnn. ARGS="--backend gpu --out results/....md"
bench-pruning: setup
	$(PY) -m experiments.bench.pruning $(ARGS)

.PHONY: kernel-report
# Every kernel of hip/ built as the gpu runtime builds it (NVRTC with CuPy's options for sm_90; hipcc with hiprtc's
# options for gfx90a; nvcc as a cross-check), no GPU needed: registers, spills, shared
# memory, theoretical occupancy on H100 and MI250, the SASS hot loop's instruction mix; checks the ladder's targets.
NVDISASM_VERSION := 13.2.86
NVDISASM := build/tools/nvdisasm-$(NVDISASM_VERSION)/nvidia/cu13/bin/nvdisasm
$(NVDISASM):
	$(PY) -m pip install -q --target build/tools/nvdisasm-$(NVDISASM_VERSION) nvidia-cuda-nvdisasm==$(NVDISASM_VERSION)
kernel-report: setup $(NVDISASM)
	$(PY) -m analysis.kernel_report --nvdisasm $(NVDISASM) --out results/$$(date +%F)-kernels.md $(ARGS)

.PHONY: coverage-gpu-path
# Line coverage of the modules a GPU run uses (runtime, conv, bench, the harness's device code) under the CPU
# test suite, every unexecuted line listed with why: results/<date>-gpu-path-coverage.md.
coverage-gpu-path: setup
	$(PY) -m analysis.gpu_path_coverage $(ARGS)

TRACKING_URI ?= sqlite:///mlflow.db
EXPERIMENT ?=

# User values reach the commands as environment variables ("$$NAME"), so spaces and quotes in them stay whole:
#   make report EXPERIMENT="two words"
export TRACKING_URI EXPERIMENT BACKEND_STORE_URI ARTIFACTS_DESTINATION SERVER_HOST SERVER_PORT SERVER_WORKERS ALLOWED_HOSTS

report: setup
	$(PY) -m analysis.report --tracking-uri "$$TRACKING_URI" $${EXPERIMENT:+--experiment "$$EXPERIMENT"} --out reports

.PHONY: sync stale
# Runs kept in an outbox (mlflow-outbox/ of a sweep or run directory) while their tracking store was
# unreachable: upload them. OUTBOX: the directories searched; SYNC_URI: another store than the runs' own.
OUTBOX ?= multirun outputs
sync: setup
	$(PY) -m experiments.tracking.outbox $(OUTBOX) $(if $(SYNC_URI),--tracking-uri '$(SYNC_URI)')

# RUNNING runs whose process is gone (this host), or still RUNNING after OLDER_THAN (other hosts): closed as KILLED.
OLDER_THAN ?= 6h
stale: setup
	$(PY) -m experiments.tracking.stale --older-than '$(OLDER_THAN)' --tracking-uri '$(TRACKING_URI)'

# Peak compute and bandwidth of this machine, for the report's roofline.
ceilings: setup
	$(PY) -m analysis.ceilings --out reports/ceilings.json

# As light as `make server`: one worker, MLflow's job runner off (it adds a dozen processes, GBs of memory).
ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} $(VENV)/bin/mlflow ui \
		--backend-store-uri '$(TRACKING_URI)' --host 127.0.0.1 --port $(SERVER_PORT) --workers 1

# A tracking server for sweeps on many processes or machines (docs/clusters.md); jobs log
# to it with tracking.uri=http://SERVER_HOST:SERVER_PORT. The store: BACKEND_STORE_URI, this repository's
# sqlite file by default, or PostgreSQL for many writers, its password in the environment (PGPASSWORD,
# or ~/.pgpass), never in the URI: a command line is visible to every user in `ps`. E.g.
#   PGPASSWORD=secret make server BACKEND_STORE_URI=postgresql://mlflow@dbhost:5432/mlflow SERVER_HOST=0.0.0.0 ALLOWED_HOSTS='head,head:*'
# Artifacts are uploaded through the server to ARTIFACTS_DESTINATION. ALLOWED_HOSTS: the host names
# jobs use to reach it (MLflow refuses other Host headers than localhost and private IPs).
# MLflow's own job runner (GenAI jobs, two more processes) is off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true.
BACKEND_STORE_URI ?= sqlite:///mlflow.db
ARTIFACTS_DESTINATION ?= mlartifacts
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 5000
# sqlite takes one writer at a time anyway: one worker process; PostgreSQL: four
SERVER_WORKERS ?= $(if $(findstring sqlite,$(BACKEND_STORE_URI)),1,4)
ALLOWED_HOSTS ?=

server: setup
	@case "$$BACKEND_STORE_URI" in *://*:*@*) echo "make server: BACKEND_STORE_URI holds a password, which ps would show;" \
		"give it as PGPASSWORD (or in ~/.pgpass) and leave it out of the URI" >&2; exit 2;; esac
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} $(VENV)/bin/mlflow server --backend-store-uri "$$BACKEND_STORE_URI" --artifacts-destination "$$ARTIFACTS_DESTINATION" \
		--host "$$SERVER_HOST" --port "$$SERVER_PORT" --workers "$$SERVER_WORKERS" \
		$${ALLOWED_HOSTS:+--allowed-hosts "$$ALLOWED_HOSTS"}

clean:
	rm -rf build reports outputs multirun .pytest_cache .hypothesis
