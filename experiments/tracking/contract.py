"""The MLflow contract between the harness (writer) and analysis/ (reader).

Every name the harness writes and the report reads is defined here once (docs/design.md,
"MLflow contract").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from experiments.conv.variant import FIELDS as VARIANT_FIELDS
from experiments.conv.variant import PARAM_PREFIX as VARIANT_PREFIX

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# --- metrics of a child run (one job of a sweep) ---------------------------------
LATENCY_MS = "latency_ms"                     # median whole-model forward
LATENCY_P10_MS = "latency_p10_ms"
LATENCY_P90_MS = "latency_p90_ms"
LATENCY_IQR_REL = "latency_iqr_rel"           # IQR / median; > 0.10 is flagged noisy
LATENCY_SAMPLES = "latency_samples"           # timed calls behind latency_ms (1 on the emulator: no p10/p90/IQR)
BASELINE_LATENCY_MS = "baseline_latency_ms"   # PyTorch, same job, same input
SPEEDUP_VS_BASELINE = "speedup_vs_baseline"   # baseline_latency_ms / latency_ms
CONV_LATENCY_MS = "conv_latency_ms"           # sum of per-layer medians
MAX_REL_ERR = "max_rel_err"                   # model output vs float64 reference
GFLOPS = "gflops"                             # conv FLOPs / latency
WORKSPACE_BYTES = "workspace_bytes"           # largest workspace of any layer
COMPILE_S = "compile_s"                       # first call, timed alone
ENERGY_KWH = "energy_kwh"                     # total of the energy window (energy_s of back-to-back calls)
EMISSIONS_KG = "emissions_kg"                 # total of the energy window, not one inference
ENERGY_PER_INFERENCE_J = "energy_per_inference_j"   # the window's energy / images it processed
CO2_PER_INFERENCE_MG = "co2_per_inference_mg"       # the window's emissions / images it processed
SPEEDUP_CI95_LOW = "speedup_ci95_low"         # 95% bootstrap interval of speedup_vs_baseline,
SPEEDUP_CI95_HIGH = "speedup_ci95_high"       # from the raw samples of both medians
# The machine while the job ran (experiments/harness/machine_load.py): a busy machine slows the job and
# makes PyTorch's baseline drift from job to job (experiments/tracking/drift.py)
LOAD_AVG_START = "load_avg_start"             # 1-minute load average when the job started
LOAD_AVG_END = "load_avg_end"                 # ... and when it ended
ENERGY_IMAGES = "energy_images"               # images the energy window ran (energy_per_inference_j's divisor)

METRICS = (
    LATENCY_MS, LATENCY_P10_MS, LATENCY_P90_MS, LATENCY_IQR_REL, LATENCY_SAMPLES, BASELINE_LATENCY_MS,
    SPEEDUP_VS_BASELINE, CONV_LATENCY_MS, MAX_REL_ERR, GFLOPS, WORKSPACE_BYTES,
    COMPILE_S, ENERGY_KWH, EMISSIONS_KG, ENERGY_PER_INFERENCE_J, CO2_PER_INFERENCE_MG,
    SPEEDUP_CI95_LOW, SPEEDUP_CI95_HIGH,
)

# GPU jobs only (experiments/runtime/device_memory.py): CuPy's pool high-water mark + torch's peak reserved.
PEAK_DEVICE_MEMORY_BYTES = "peak_device_memory_bytes"
GPU_METRICS = (PEAK_DEVICE_MEMORY_BYTES,)

# algo=auto only (experiments/tuning): the tuned model beside the best single candidate.
TUNING_MEASURED = "tuning_measured"           # layers measured by this run
TUNING_REUSED = "tuning_reused"               # layers whose choice came from the tuning database
TUNING_S = "tuning_s"                         # seconds spent choosing (lookups and measurements)
BEST_SINGLE_LATENCY_MS = "best_single_latency_ms"  # median whole forward on the best single candidate
SPEEDUP_VS_BEST_SINGLE = "speedup_vs_best_single"  # best_single_latency_ms / latency_ms
TUNED_CONV_MS = "tuned_conv_ms"               # sum over layers of the chosen candidates' tuning medians
BEST_SINGLE_CONV_MS = "best_single_conv_ms"   # the same sum for the best single candidate

AUTO_METRICS = (TUNING_MEASURED, TUNING_REUSED, TUNING_S, BEST_SINGLE_LATENCY_MS, SPEEDUP_VS_BEST_SINGLE,
                TUNED_CONV_MS, BEST_SINGLE_CONV_MS)

# Pruned or quantized jobs only (experiments/compress): the same job also times the dense fp32 model,
# so each speedup is wall-clock time on one machine, set beside the MAC ratio that pruning tools report.
DENSE_LATENCY_MS = "dense_latency_ms"                    # the dense fp32 model on the same technique
DENSE_BASELINE_LATENCY_MS = "dense_baseline_latency_ms"  # the dense fp32 model on PyTorch
SPEEDUP_VS_DENSE = "speedup_vs_dense"                    # dense_latency_ms / latency_ms
SPEEDUP_VS_DENSE_BASELINE = "speedup_vs_dense_baseline"  # dense_baseline_latency_ms / latency_ms
BASELINE_FP16_LATENCY_MS = "baseline_fp16_latency_ms"    # int8 on a GPU: PyTorch fp16 of the same model
MAC_RATIO = "mac_ratio"                # dense MACs of the original / MACs with non-zero weights after pruning
DENSE_MAC_RATIO = "dense_mac_ratio"    # dense MACs before / dense MACs after (what smaller shapes can deliver)
PRUNED_FRACTION = "pruned_fraction"    # fraction of prune's unit (weights, kernels, channels, blocks) removed
PARAMS = "params"                      # conv and linear weights + biases after pruning
TOP1_AGREEMENT = "top1_agreement"      # evaluation images whose top-1 class is the dense fp32 model's
FIDELITY_REL_ERR = "fidelity_rel_err"  # max|y - y_dense| / max|y_dense| on the evaluation images
ACCURACY_TOP1 = "accuracy_top1"        # on labelled images (digits_cnn, accuracy.image_folder)
DENSE_ACCURACY_TOP1 = "dense_accuracy_top1"   # the dense fp32 model on the same labelled images
EVAL_IMAGES = "eval_images"            # images of the fidelity/accuracy evaluation
# fp16/int8 only (experiments/compress/precision_cost.py): the precision's cost against the fp32 model that
# was quantized (pruned, if the job prunes); measured, never a gate unless quant.max_cost is set
PRECISION_REL_ERR = "precision_rel_err"                  # model logits vs the fp32 model's, evaluation images
PRECISION_WORST_LAYER_REL_ERR = "precision_worst_layer_rel_err"   # the largest per-layer cost
PRECISION_TOP1_AGREEMENT = "precision_top1_agreement"    # evaluation images whose top-1 is the fp32 model's
FP32_LAYERS = "fp32_layers"                              # conv layers quant.skip kept in fp32

COMPRESSION_METRICS = (DENSE_LATENCY_MS, DENSE_BASELINE_LATENCY_MS, SPEEDUP_VS_DENSE, SPEEDUP_VS_DENSE_BASELINE,
                       BASELINE_FP16_LATENCY_MS, MAC_RATIO, DENSE_MAC_RATIO, PRUNED_FRACTION, PARAMS,
                       TOP1_AGREEMENT, FIDELITY_REL_ERR, ACCURACY_TOP1, DENSE_ACCURACY_TOP1, EVAL_IMAGES,
                       PRECISION_REL_ERR, PRECISION_WORST_LAYER_REL_ERR, PRECISION_TOP1_AGREEMENT, FP32_LAYERS)

# --- params: the resolved Hydra config, flattened with dots -------------------------
P_MODEL = "model.name"
P_WEIGHTS = "model.weights"     # null: random initialisation; else torchvision weights from the hub cache
P_BATCH = "model.batch_size"
P_INPUT_SIZE = "model.input_size"
P_ALGO = "algo.name"            # pytorch | im2col | kn2row | scalar | auto
P_GEMM = "gemm.name"            # blocked | vendor
P_TILE = "gemm.tile"            # blocked GEMM tile (threads per block side)
P_BACKEND = "backend.name"      # as requested: auto | gpu | emulator | numpy
P_QUANT = "quant.name"          # fp32 | fp16 | int8
P_PRUNE = "prune.name"          # none | unstructured | output_channel | ...
P_PRUNE_AMOUNT = "prune.amount"     # the requested fraction; the achieved one is the pruned_fraction metric
P_BENCH = "bench.name"          # smoke | default | paper
P_CACHE_MODE = "bench.cache_mode"  # hot | cold

# --- params: what the config resolved to (experiments/harness/results.py: resolved_params) ----
# The resolved variant (experiments/conv/variant.py), one param per field plus its label: the report
# reads these, never re-deriving them from the raw config above.
P_VARIANT_LABEL = f"{VARIANT_PREFIX}label"     # e.g. kn2row/blocked-t8/fp32
P_VARIANT_GEMM = f"{VARIANT_PREFIX}gemm"       # empty where no GEMM runs (pytorch, scalar, auto)
P_VARIANT_TILE = f"{VARIANT_PREFIX}tile"       # empty but for the blocked GEMM
P_VARIANT_CUSTOM = f"{VARIANT_PREFIX}custom"   # gemm=custom: the kernel's name, empty otherwise
P_VARIANT_CUSTOM_PATH = f"{VARIANT_PREFIX}custom.path"      # gemm=custom: the kernel file, absolute
P_VARIANT_CUSTOM_SHA256 = f"{VARIANT_PREFIX}custom.sha256"  # gemm=custom: the file's sha256 (what ran)
VARIANT_PARAMS = (*(f"{VARIANT_PREFIX}{field}" for field in VARIANT_FIELDS), P_VARIANT_LABEL)

# --- tags ---------------------------------------------------------------------------
T_STATUS = "status"             # ok | failed (a run closed as KILLED is failed too; its error says why)
T_ERROR = "error"               # exception text of a failed job, or what stopped a KILLED run
T_DEVICE = "device"             # e.g. "NVIDIA H100 80GB HBM3", or the CPU model
T_BACKEND = "backend"           # resolved: gpu | emulator | numpy
T_RUNTIME = "runtime"           # cuda | hip | cpu | emulated
T_TIMING = "timing"             # measured | emulated (emulated timings are never performance)
T_EXECUTION = "execution"       # how the runtime ran: its thread policy (experiments/runtime/threads.py)
T_GIT_SHA = "git_sha"
T_GIT_DIRTY = "git_dirty"
T_KERNEL_HASH = "kernel_hash"
T_SWEEP_ID = "sweep_id"
T_ENERGY_MODE = "energy_mode"   # rapl | nvml | estimated | off | failed (energy metrics not logged)
T_VERSION_PREFIX = "version."   # version.torch, version.cupy, version.mlflow, ...
T_RUN_KIND = "run_kind"         # parent | job
T_JOB_NUM = "job_num"           # a sweep's job: its number (hydra.job.num), how the sweep finds its run
T_BEST_SINGLE = "best_single"   # algo=auto: the best single candidate, e.g. im2col/blocked-t16/fp32
T_BASELINE = "baseline"         # what baseline_latency_ms measured: pytorch fp32 | pytorch fp16 channels_last
T_CUDNN_BENCHMARK = "cudnn_benchmark"   # the PyTorch baseline's cuDNN autotuning: on | off | unused (no cuDNN)
T_EVAL_DATA = "eval_data"       # the evaluation images of the fidelity metrics (digits test split, ...)
T_WEIGHTS = "weights"           # pruned/quantized jobs: the model's weights, "random" or torchvision's name
T_FP32_LAYERS = "fp32_layer_names"      # fp16/int8: the conv layers quant.skip kept in fp32, comma separated
T_PRECISION_WORST_LAYER = "precision_worst_layer"   # fp16/int8: the layer of precision_worst_layer_rel_err
T_VISIBLE_DEVICES = "visible_devices"  # the GPUs a job of a parallel launcher was given (CUDA_VISIBLE_DEVICES)
T_ENERGY_ERROR = "energy_error"  # why the energy window failed (the timings stand without it)
# The process that writes a run: a RUNNING run whose process is gone is closed as KILLED
# (experiments/tracking/stale.py); the start time tells a live process from a reused pid.
T_HOST = "host"
T_PID = "pid"
T_PROCESS_START = "process_start"   # the process's start, seconds since the epoch
T_OUTBOX = "outbox"             # set on a run uploaded later from an outbox: the outbox entry it came from
T_CLIENT_ID = "client_run_id"   # made by convbench before the run exists: a retried or resumed upload finds its run
T_JOB_NAME = "job_name"         # the job's full name (model/variant/prune); a sweep's child run is named short
T_QUIET = "machine_quiet"       # yes | no: no other process was busy at the job's start and end
T_BUSY_PROCESSES = "busy_processes"   # the other busy processes and load when not quiet, in words
T_ENERGY_WINDOW = "energy_window"     # readable | thin (fewer images than MIN_ENERGY_IMAGES: not ranked)
T_BASELINE_DRIFT = "baseline_drift"   # a sweep's parent: PyTorch's medians spread across its jobs (drift.py)
T_VS_PYTORCH = "vs_pytorch"     # the speedup in words, '2.35× slower' (a column of the UI's runs table)
T_WHAT_RAN = "what_ran"         # in words: numpy reference on the CPU, emulator (correctness only), kernels on a GPU

# --- names in the MLflow UI -------------------------------------------------------------
# A sweep's parent run is named by what was swept and what all its jobs share; each child by what
# differs between the jobs (experiments/harness/naming.py), e.g.
#   parent "algo=im2col,kn2row,scalar · resnet18 · numpy", children "im2col", "kn2row", "scalar".
NAME_SEPARATOR = " · "
# MLflow 3 opens an experiment in its GenAI view unless tagged as model development.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# A shared view of the runs table (the UI's "share view"): an experiment tag holding the view state,
# opened by <ui>/#/experiments/<id>/runs?viewStateShareKey=<key>. One per sweep, key = its sweep id.
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
# The columns that view shows, in order: what a reader compares first.
UI_METRICS = (LATENCY_MS, SPEEDUP_VS_BASELINE, SPEEDUP_CI95_LOW, SPEEDUP_CI95_HIGH, MAX_REL_ERR,
              ENERGY_PER_INFERENCE_J, CO2_PER_INFERENCE_MG)

# --- artifacts ----------------------------------------------------------------------
A_CONFIG = "config.yaml"
A_LAYERS = "layers.csv"
A_SAMPLES_DIR = "samples"       # raw per-call timings, one CSV per measured target
A_TUNING_DB = "tuning.db"       # algo=auto: a snapshot of the tuning database after the run's tuning
A_TRACEBACK = "traceback.txt"   # a failed job's traceback
A_HARNESS = "harness.json"      # where the job's time went (setup, check, timing, energy, logging)

# --- params and metrics of a parent run (one per sweep) ------------------------------
P_SWEEP_OVERRIDES = "sweep.overrides"
P_SWEEP_JOBS = "sweep.jobs"
P_SWEEP_DIR = "sweep.dir"
JOBS_TOTAL, JOBS_OK, JOBS_FAILED = "jobs_total", "jobs_ok", "jobs_failed"
JOBS_SKIPPED, JOBS_MISSING = "jobs_skipped", "jobs_missing"   # missing: started, left no result
JOBS_NOT_STARTED = "jobs_not_started"   # a stopped sweep's jobs that never started
JOBS_IN_OUTBOX = "jobs_in_outbox"   # jobs whose runs wait in the sweep's outbox (store unreachable)
STALE_RUNS_CLOSED = "stale_runs_closed"   # RUNNING runs of dead processes this sweep's start closed as KILLED

# Columns of layers.csv (one row per conv layer of the model), named once for the writer (experiments/
# harness/results.py) and the readers (analysis/): LAYER.kernel_h is "kernel_h", LAYER_COLUMNS their order.
@dataclass(frozen=True)
class LayerColumns:
    layer: str = "layer"
    batch: str = "batch"
    in_channels: str = "in_channels"
    out_channels: str = "out_channels"
    kernel_h: str = "kernel_h"
    kernel_w: str = "kernel_w"
    stride: str = "stride"
    padding: str = "padding"
    dilation: str = "dilation"
    groups: str = "groups"
    in_h: str = "in_h"
    in_w: str = "in_w"
    out_h: str = "out_h"
    out_w: str = "out_w"
    flops: str = "flops"
    gemm_m: str = "gemm_m"
    gemm_n: str = "gemm_n"
    gemm_k: str = "gemm_k"
    min_bytes: str = "min_bytes"
    workspace_bytes: str = "workspace_bytes"
    arithmetic_intensity: str = "arithmetic_intensity"
    # GEMM dimensions above are per group; gemm_groups of them run (0: no GEMM). variant: the label of
    # the variant that ran the layer, e.g. im2col/blocked-t8/fp32, kn2row/sparse/fp32, depthwise/fp32
    # (empty for pytorch; `kernel` in files written before 2026-12-07); tile: its blocked GEMM's threads
    # per block side (empty for every other GEMM)
    gemm_groups: str = "gemm_groups"
    variant: str = "variant"
    tile: str = "tile"
    latency_ms: str = "latency_ms"
    latency_p10_ms: str = "latency_p10_ms"
    latency_p90_ms: str = "latency_p90_ms"
    baseline_latency_ms: str = "baseline_latency_ms"
    max_rel_err: str = "max_rel_err"
    # fp16/int8 jobs: how the exactness gate checked the layer (bit-exact, float32 bound, or the fp32
    # tolerance where quant.skip kept it fp32: see variant) and its cost against the fp32 layer
    gate: str = "gate"
    precision_rel_err: str = "precision_rel_err"
    # algo=auto: the layer's choice and runner-up (variant labels: scalar/fp32, im2col/vendor/fp32,
    # kn2row/blocked-t16/fp32, ...) with their tuning medians, and whether this run measured them
    # or took them from the tuning database (measured | reused); empty for other algorithms
    choice: str = "choice"
    runner_up: str = "runner_up"
    choice_tuned_ms: str = "choice_tuned_ms"
    runner_up_tuned_ms: str = "runner_up_tuned_ms"
    tuning: str = "tuning"


LAYER = LayerColumns()
LAYER_COLUMNS = tuple(asdict(LAYER).values())
# Columns of older layers.csv files under their current name: the reader renames them.
FORMER_LAYER_COLUMNS = {"kernel": "variant"}
