"""How a conv/GEMM kernel splits its output into tasks, and whether to run them in parallel.

A task is (group, tile of `ptile` consecutive output pixels, chunk of weight panels).
Within a task every panel of the chunk sweeps the tile in 6-row register blocks, so a
weight panel (K x 16) is loaded from L2 once per tile and reused from L1 by each block;
bigger tiles mean more reuse.  The layer needs a few tasks per thread for balance under
prange's static schedule; layers with few pixels (an 8x8 ResNet stage at batch 1, an FC
layer) keep tiles of at least 48 pixels and are split across panel chunks instead.

Only tiny layers run serially: with the worker threads spinning briefly between kernels
(`kernels/__init__.py`), a parallel region costs a few microseconds here, so a conv of
a few hundred thousand operations already gains from the second core.
"""

from __future__ import annotations

from numba import njit

#: largest pixel tile (rows); a multiple of every micro-kernel height (4, 6, 12)
MAX_TILE_ROWS = 96
#: smallest pixel tile we cut a layer into before splitting its weight panels instead:
#: every pixel tile streams all its panels' weights once, so for layers with few pixels and
#: many weights (FC layers, late 4x4 / 7x7 stages) splitting the panels is cheaper
MIN_TILE_ROWS = 48
#: tasks we aim for at most.  A constant rather than a multiple of `numba.get_num_threads()`:
#: calling that inside a kernel makes Numba refuse to cache it (it embeds a ctypes pointer).
#: 16 balances 1, 2, 4 or 8 threads under prange's static schedule.
TARGET_TASKS = 16
#: below this many operations (2 per multiply-add; see `convplan.make_plan` for int8) a kernel
#: runs serially.  Measured 2026-11-27 with interleaved A/B runs of whole models
#: (`benchmarks/ab_compare.py`, results/ab_compare.md), with the workers spinning between
#: kernels: 250 k (int8, depthwise) / 500 k (fp32) against 1 M / 2 M made MobileNetV2-CIFAR
#: int8 0.84x the time and left ResNet18-CIFAR fp32 and int8 and SqueezeNet-CIFAR fp32 within
#: 2 %.  (While the workers slept at once, OMP_WAIT_POLICY=PASSIVE, the best thresholds were
#: 4 M / 8 M: at 1 M / 2 M every region paid a thread wake-up, and ResNet18-CIFAR and
#: VGG16-CIFAR took 1.8x as long as with spinning at the same thresholds.)
PARALLEL_MIN_OPS = 250_000
#: the same threshold for fp32 convs and GEMMs (`conv_f32.py`)
FP32_CONV_PARALLEL_MIN_OPS = 500_000
#: elements of a conv's padded (and widened) input copy from which the copy runs in parallel:
#: a copy is memory-bound and cheap (a 56x56x64 int8 input widens in ~17 us on one thread).  It was
#: 512 k while a parallel copy cost 20-30 us even for tiny inputs (benchmarks/results/parallel_overhead.md,
#: workers sleeping at once); 64 k with spinning workers, measured together with `codegen.lower.PARALLEL_MIN_WORK`
PAD_PARALLEL_MIN = 1 << 16
#: how many times more a padded element costs when each group's channels are padded to an even
#: count (an int8 3-channel stem: a strided loop per channel, ~1 ns per element against ~0.08)
ODD_CHANNEL_PAD_COST = 16
#: a GEMM with fewer rows than one micro-kernel block (batch-1 FC) streams its weights at
#: roughly a third of the compute rate, so its operations count this many times over
FEW_ROWS_WEIGHT = 3
#: operations per task we aim for at least, so small parallel layers are not over-split
MIN_TASK_OPS = 1_000_000


@njit(cache=True)
def run_parallel(ops, rows=6, min_ops=PARALLEL_MIN_OPS):
    """Whether a kernel doing `ops` operations over `rows` output pixels should use its parallel loop."""
    return ops * (FEW_ROWS_WEIGHT if rows < 6 else 1) >= min_ops


@njit(cache=True)
def pad_in_parallel(plan_parallel, padded_size, channels_padded=False):
    """Whether a conv copies its padded input in a parallel loop (see PAD_PARALLEL_MIN)."""
    work = padded_size * (ODD_CHANNEL_PAD_COST if channels_padded else 1)
    return plan_parallel and work >= PAD_PARALLEL_MIN


@njit(cache=True)
def plan_tiles(npix, groups, panels, ops, parallel, rows=6):
    """(ptile, nptiles, nchunks) for `npix` output pixels, `groups` groups of `panels` weight panels, with
    tiles a multiple of the micro-kernel height `rows` (so only a layer's last tile has a short block).

    The tiles split the pixels evenly (49 pixels in 6-row blocks: 30 + 19, not 48 + 1): tasks of one chunk
    run side by side, and a tile of one pixel would leave a thread idle for most of the layer."""
    target = max(2, min(TARGET_TASKS, ops // MIN_TASK_OPS)) if parallel else 1
    per_group = max(1, -(-target // groups))
    ptile = max(-(-npix // per_group), min(npix, MIN_TILE_ROWS))
    top = MAX_TILE_ROWS // rows * rows
    ptile = max(rows, min(top, -(-ptile // rows) * rows))
    nptiles = -(-npix // ptile)
    even = -(-npix // nptiles)  # pixels per tile when they are spread evenly
    ptile = max(rows, -(-even // rows) * rows)
    nptiles = -(-npix // ptile)
    nchunks = 1
    if groups * nptiles < target:
        nchunks = min(panels, -(-target // (groups * nptiles)))
    return ptile, nptiles, nchunks
