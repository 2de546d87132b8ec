"""The trainer: preprocess cases once, sample patches, masked Dice+CE, checkpoints, resume, DDP.

``train_model`` is the one entry point (``api.train`` and the active-learning fine-tune call it); it
runs the steps below: the run's config and first weights (:func:`resolve_config`), the network and
optimiser (:func:`start_run`, with an optional :class:`~lnq_napari.training.anchor.Anchor` to the
parent), the patch sampler, then :func:`train_step` per iteration with :class:`TrainLog` and
:func:`save_state`. Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with
DistributedDataParallel: nccl on CUDA, gloo on the CPU; every rank draws its own patches, rank 0 writes
checkpoints.
"""

from __future__ import annotations

import atexit
import copy
import csv
import datetime as _dt
import functools
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import lnq_napari
from lnq_napari.ct_scale import check_ct_values
from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.datasets import find_cases
from lnq_napari.io.layout import CaseFiles
from lnq_napari.io.readers import read_labels, read_volume
from lnq_napari.io.volume import Volume
from lnq_napari.model.checkpoint import load_state, save_checkpoint
from lnq_napari.model.config import ModelConfig, StatesConfig, TrainingRecord
from lnq_napari.preprocess import Prepared, pad_value, prepare
from lnq_napari.processes import broken_pool_said, process_pool, usable_workers
from lnq_napari.training.anchor import Anchor, AnchorTerms, trainable_parameters
from lnq_napari.training.labels import label_states, naive_states
from lnq_napari.training.sampler import PatchSampler, PatchSource, Unenhance

STATE_DIR = "train_state"
FOCUS_CODE = 4  # states -1/0/1 + FOCUS_CODE mark focus voxels while they are resampled
Progress = Callable[[float, str], None] | None


@dataclass
class TrainingCase:
    """A CT and its label states on the CT grid (1 node, 0 known background, -1 unknown).

    ``focus`` (bool, CT grid, optional): what a reviewer edited; the train setting ``focus_fraction``
    centres that share of patches on them, and distillation toward a parent skips them. ``replay``: a
    case replayed against forgetting (the train setting ``replay_fraction`` sets its share of a batch).
    ``prepared``: the CT already through :func:`~lnq_napari.preprocess.prepare` with the trained model's
    preprocessing (a fine-tune prepares each CT once for training, mining and training on).
    """

    case_id: str
    ct: Volume
    states: np.ndarray
    focus: np.ndarray | None = None
    replay: bool = False
    prepared: Prepared | None = None


# ---------------------------------------------------------------- reading cases
def load_case(case: CaseFiles, naive: bool = False,
              states_options: StatesConfig | None = None) -> TrainingCase:
    """One case of an LNQ-layout folder with its label states (or naive states); an LNQError names the
    case (a folder holds hundreds)."""
    try:
        ct = read_volume(case.ct)
        check_ct_values(np.asarray(ct.array))  # NaN voxels made training diverge (lower lr, it said)
        seg = read_labels(case.seg, reference=ct)
    except LNQError as exc:
        raise LNQError(f"case {case.case_id}: {exc}") from exc
    states = naive_states(seg) if naive else label_states(ct, seg, options=states_options)
    return TrainingCase(case.case_id, ct, states)


def load_training_cases(data_dir: str | Path, naive: bool = False, states_options: StatesConfig | None = None,
                        progress: Progress = None, workers: int | None = None) -> list[TrainingCase]:
    """Read a data folder (LNQ layout or DICOM: :func:`~lnq_napari.io.datasets.find_cases`) into training
    cases with label states (or naive states).

    Cases are read in ``workers`` processes (default: up to 4, one per CPU); the order is the folder's.
    """
    found = find_cases(data_dir, require="seg", what="training data")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    workers = max(1, min(usable_workers(int(workers)), len(found)))
    args = [(case, naive, states_options) for case in found]
    cases: list[TrainingCase] = []
    if workers == 1:
        results = (load_case(*a) for a in args)
        pool = None
    else:
        pool = process_pool(workers)
        results = pool.map(load_case, *zip(*args))
    try:
        with broken_pool_said():
            for case in results:
                cases.append(case)
                if progress:
                    progress(len(cases) / len(found), f"read {case.case_id}")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return cases


def data_fingerprint(cases: Sequence[TrainingCase]) -> tuple[str, dict]:
    """A sha256 over the cases' ids, grids and states, and a short summary of the data."""
    h = hashlib.sha256()
    n_node = n_known = n_total = 0
    for c in sorted(cases, key=lambda c: c.case_id):
        h.update(json.dumps([c.case_id, c.ct.shape, c.ct.spacing, c.ct.origin]).encode())
        h.update(np.ascontiguousarray(c.states).tobytes())
        n_node += int((c.states == 1).sum())
        n_known += int((c.states >= 0).sum())
        n_total += int(c.states.size)
    summary = {
        "n_cases": len(cases),
        "case_ids": [c.case_id for c in cases][:50],
        "node_voxels": n_node,
        "known_fraction": round(n_known / max(n_total, 1), 4),
    }
    return h.hexdigest(), summary


# ---------------------------------------------------------------- config and set-up
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version(parent_version: str | None, fingerprint: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M")
    base = f"{parent_version}+ft" if parent_version else "lnq-unet"
    return f"{base}-{stamp}-{fingerprint[:8]}"


def resolve_config(config: ModelConfig | dict | None, out_dir: Path, init_from: str | Path | None,
                   resume: bool) -> tuple[ModelConfig, dict | None]:
    """``(config, first weights or None)`` of a run.

    ``resume``: the saved run in ``out_dir``. Else the defaults with ``config`` (a partial config.json
    object) merged in; with ``init_from`` the architecture, preprocessing and inference of that model.
    """
    if resume:
        if not (out_dir / STATE_DIR / "state.pt").is_file():
            raise LNQError(f"nothing to resume in {out_dir} (no {STATE_DIR}/state.pt); "
                           "train without --resume")
        state, cfg = load_state(out_dir)
        return cfg, state
    cfg = copy.deepcopy(config) if isinstance(config, ModelConfig) else ModelConfig().merged(config)
    if init_from is None:
        return cfg, None
    state, parent = load_state(init_from)
    cfg.architecture = copy.deepcopy(parent.architecture)
    cfg.preprocessing = copy.deepcopy(parent.preprocessing)
    cfg.inference = copy.deepcopy(parent.inference)
    cfg.parent_version = parent.version
    return cfg, state


def _record_start(cfg: ModelConfig, cases: Sequence[TrainingCase], iterations: int, seed: int,
                  world: int) -> None:
    fingerprint, summary = data_fingerprint(cases)
    cfg.version = _version(cfg.parent_version, fingerprint)
    cfg.training = TrainingRecord(
        iterations=int(iterations), seed=int(seed), world_size=world, data_fingerprint=fingerprint,
        data=summary, naive=bool(cfg.naive), started=_now(),
    )


def init_distributed(device):
    """(rank, world, device) - initialises the process group from torchrun's env vars if needed."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        # before the group exists: imported later (DDP does), torch._dynamo keeps references to the default
        # group for good, and destroy_process_group could no longer end it (see _destroy_process_group)
        import torch._dynamo  # noqa: F401
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)
    return dist.get_rank(), dist.get_world_size(), device


def _destroy_process_group() -> None:
    """At exit (after an error too, but not on NCCL: :func:`destroy_at_exit`), while Python still runs: end
    the process group ``init_distributed`` started and join its worker threads. Left to the interpreter's
    own teardown, a gloo worker could still be freeing a finished collective (DDP's all-reduces carry the
    backward pass's Python context, freed when the final barrier is) when Python finalises; it then takes
    the GIL, the thread is torn down inside a destructor and the rank aborts ("terminate called without
    an active exception") after a successful run. The group's threads are joined when its last reference
    goes: the DDP wrapper's reducer holds one until collected."""
    import gc

    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if not destroy_at_exit(dist.get_backend(), _FAILED[0] or getattr(sys, "last_value", None) is not None):
        return
    dist.destroy_process_group()
    gc.collect()


#: Whether a training run of this process ended in an exception (:func:`_noting_failure`): read at exit.
_FAILED = [False]


def destroy_at_exit(backend: str, failed: bool) -> bool:
    """Whether :func:`_destroy_process_group` ends the group: not on NCCL when the process exits on an
    exception (``failed``: a training run raised, or one escaped to the interpreter, which sets
    ``sys.last_value`` before the exit handlers run), where a collective left pending can hang the destroy
    until NCCL's timeout; always on gloo, whose teardown by the interpreter aborts the rank."""
    return backend != "nccl" or not failed


def _noting_failure(train):
    """``train``, noting in :data:`_FAILED` whether the last call ended in an exception (a CLI that catches
    it and exits leaves no ``sys.last_value``)."""

    @functools.wraps(train)
    def noted(*args, **kwargs):
        _FAILED[0] = False
        try:
            return train(*args, **kwargs)
        except BaseException:
            _FAILED[0] = True
            raise

    return noted


@dataclass
class TrainRun:
    """One run's moving parts: its config, network (``model`` is its DDP wrapper, if any), optimiser,
    device, rank, folder and iterations (``start``: where it begins, after a resume)."""

    config: ModelConfig
    out_dir: Path
    net: Any
    model: Any
    optimizer: Any
    device: Any
    rank: int = 0
    world: int = 1
    start: int = 0
    iterations: int = 0
    terms: AnchorTerms | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def state_dir(self) -> Path:
        return self.out_dir / STATE_DIR


def start_run(cases: Sequence[TrainingCase], out_dir: Path, iterations: int, device: str, seed: int,
              init_from: str | Path | None, config: ModelConfig | dict | None, resume: bool,
              anchor: Anchor | None = None) -> TrainRun:
    """Config, network with its first weights, optimiser (restored on resume), DDP wrapper; with an
    ``anchor`` only its trainable weights are optimised, and with L2-SP without weight decay."""
    import torch

    from lnq_napari.model.network import build_network  # torch

    rank, world, device_t = init_distributed(resolve_device(device))
    cfg, init_state = resolve_config(config, out_dir, init_from, resume)
    if not resume:
        _record_start(cfg, cases, iterations, seed, world)
    cfg.lnq_napari_version = lnq_napari.__version__
    torch.manual_seed(seed)
    net = build_network(cfg.architecture.name, cfg.architecture.kwargs)
    if init_state is not None:
        net.load_state_dict(init_state)
    net.to(device_t)
    params = trainable_parameters(net, anchor.trainable if anchor else "all")
    decay = 0.0 if anchor and anchor.l2sp_weight > 0 else cfg.train.weight_decay
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=decay)
    terms = AnchorTerms(anchor, net, device_t) if anchor else None
    run = TrainRun(cfg, out_dir, net, net, opt, device_t, rank, world, 0, int(iterations), terms)
    if resume:
        saved = _load_resume_state(run.state_dir / "state.pt", device_t)
        opt.load_state_dict(saved["optimizer"])
        run.start = int(saved["iteration"])
        run.iterations = int(cfg.training.iterations)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device_t.index] if device_t.type == "cuda" else None
        run.model = DistributedDataParallel(net, device_ids=ids)
    return run


def _load_resume_state(path: Path, device) -> dict:
    """The optimizer state and iteration a checkpoint saved; LNQError in one line when the file is damaged
    (a copy cut short, a disk error): the run cannot be continued."""
    import torch

    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # torch's zip reader, the unpickler: each its own long error for a damaged file
        saved = None
    if not (isinstance(saved, dict) and isinstance(saved.get("optimizer"), dict)
            and isinstance(saved.get("iteration"), int)):
        raise LNQError(f"{path} is damaged (cut short, or not a checkpoint of lnq-napari train); this "
                       "training cannot be continued: train again without --resume into a new --out folder")
    return saved


def _prepare_sources(cases, prep, rng, progress):
    sources = []
    for k, case in enumerate(cases):
        if case.states.shape != case.ct.shape:
            raise LNQError(f"case {case.case_id}: states {case.states.shape} are not on the CT grid "
                           f"{case.ct.shape}; compute them on the CT grid")
        labels = np.asarray(case.states, dtype=np.int8)
        if case.focus is not None:  # resampled together with the states: focus adds FOCUS_CODE
            labels = labels.copy()
            labels[np.asarray(case.focus, bool)] += FOCUS_CODE
        p = prepare(case.ct, prep, labels=labels, image=case.prepared)
        focus = p.labels >= FOCUS_CODE - 1 if case.focus is not None else None
        states = p.labels if focus is None else (p.labels - np.where(focus, FOCUS_CODE, 0)).astype(np.int8)
        sources.append(PatchSource.build(case.case_id, p.image, states, rng, focus=focus, replay=case.replay))
        if progress:
            progress(0.0, f"preprocessed {k + 1}/{len(cases)} cases")
    return sources


def make_sampler(cfg: ModelConfig, cases: Sequence[TrainingCase], rng: np.random.Generator,
                 progress: Progress = None) -> PatchSampler:
    """Preprocess the cases to the model grid and sample patches as the config's train settings say."""
    sources = _prepare_sources(cases, cfg.preprocessing, rng, progress)
    t = cfg.train
    unenhance = Unenhance.from_hu(float(t.unenhance), cfg.preprocessing, float(cfg.states.high_hu))
    return PatchSampler(sources, t.patch_size, t.fg_fraction, pad_value(cfg.preprocessing), rng,
                        flip_x=t.flip_x, intensity_jitter=t.intensity_jitter, unenhance=unenhance,
                        focus_fraction=float(t.focus_fraction), replay_fraction=t.replay_fraction)


# ---------------------------------------------------------------- the loop
def _lr(it: int, total: int, base: float, warmup: int) -> float:
    if it < warmup:
        return base * (it + 1) / warmup
    return base * (1.0 - it / max(total, 1)) ** 0.9


class Precision:
    """Mixed precision on CUDA (bf16 where supported, else fp16 with a gradient scaler); fp32 on the CPU."""

    def __init__(self, device) -> None:
        import torch

        self.enabled = device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)


def train_step(run: TrainRun, sampler: PatchSampler, precision: Precision, it: int) -> tuple[float, float]:
    """One optimiser step on a sampled batch at iteration ``it``; returns ``(loss, lr)``."""
    import torch

    from lnq_napari.training.losses import masked_dice_ce  # torch

    t = run.config.train
    lr = _lr(it, run.iterations, t.lr, t.warmup)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batch = sampler.sample_batch(int(t.batch_size))
    x = torch.from_numpy(batch.images).to(run.device, non_blocking=True)
    s = torch.from_numpy(batch.states).to(run.device, non_blocking=True)
    run.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(run.device.type, dtype=precision.dtype, enabled=precision.enabled):
        logits = run.model(x)
    loss = masked_dice_ce(logits.float(), s, t.dice_weight)
    if run.terms is not None:
        edited = torch.from_numpy(batch.edited).to(run.device, non_blocking=True)
        loss = loss + run.terms.loss(run.net, x, logits.float(), edited)
    precision.scaler.scale(loss).backward()
    precision.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.net.parameters(), 12.0)
    precision.scaler.step(run.optimizer)
    precision.scaler.update()
    return float(loss.detach()), lr


class TrainLog:
    """Running loss (EMA), progress messages ("it 120/2000 loss 0.4321 2.10 it/s") and train_log.csv
    rows; only rank 0 reports and writes."""

    def __init__(self, run: TrainRun, progress: Progress, resume: bool) -> None:
        self.run, self.progress = run, progress
        self.path = run.out_dir / "train_log.csv"
        self.ema: float | None = None
        self.t0 = time.time()
        if run.is_main:
            run.out_dir.mkdir(parents=True, exist_ok=True)
            if not resume or not self.path.exists():
                self.path.write_text("iteration,loss,lr,seconds\n")

    def update(self, it: int, loss: float, lr: float) -> None:
        self.ema = loss if self.ema is None else 0.95 * self.ema + 0.05 * loss
        if not self.run.is_main:
            return
        total, elapsed = self.run.iterations, time.time() - self.t0
        if self.progress and (it % 5 == 0 or it == total):
            rate = (it - self.run.start) / max(elapsed, 1e-9)
            self.progress(it / total, f"it {it}/{total} loss {self.ema:.4f} {rate:.2f} it/s")
        if it % 10 == 0 or it == total:
            with open(self.path, "a", newline="") as handle:
                csv.writer(handle).writerow([it, f"{self.ema:.5f}", f"{lr:.6g}", f"{elapsed:.1f}"])


def save_state(run: TrainRun, it: int) -> None:
    """Rank 0: the model folder (weights + config) and the optimiser state for a resume at ``it``."""
    import torch

    if not run.is_main:
        return
    run.config.training.completed_iterations = it
    save_checkpoint(run.out_dir, run.net.state_dict(), run.config)
    state = io.BytesIO()  # torch's own writer turns a full disk into "unexpected pos" RuntimeErrors
    torch.save({"optimizer": run.optimizer.state_dict(), "iteration": it}, state)
    with atomic_write(run.state_dir / "state.pt") as tmp:
        tmp.write_bytes(state.getvalue())


def _finish(run: TrainRun, it: int, ema: float | None) -> None:
    """Record the end, check that DDP replicas agree, write the final checkpoint."""
    record = run.config.training
    record.finished = _now()
    record.final_loss_ema = None if ema is None else round(ema, 5)
    if run.world > 1:
        import torch.distributed as dist

        digests: list = [None] * run.world
        dist.all_gather_object(digests, weights_digest(run.net))
        record.rank_weight_digests = digests
        if len(set(digests)) != 1:
            raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
    save_state(run, it)
    if run.world > 1:
        dist.barrier()


@_noting_failure
def train_model(
    cases: Sequence[TrainingCase],
    out_dir: str | Path,
    iterations: int,
    device: str = "auto",
    seed: int = 0,
    init_from: str | Path | None = None,
    config: ModelConfig | dict | None = None,
    progress: Progress = None,
    cancel: Callable[[], bool] | None = None,
    resume: bool = False,
    checkpoint_every: int = 200,
    anchor: Anchor | None = None,
    stop_at: int | None = None,
) -> Path:
    """Train (or fine-tune, with ``init_from``) a model on ``cases``; returns the model folder ``out_dir``.

    ``config``: a :class:`ModelConfig`, or a partial config.json object merged into the defaults section
    by section. With ``init_from`` the architecture, preprocessing and inference settings come from that
    model. ``resume=True`` continues from the last checkpoint in ``out_dir`` (weights, optimizer,
    iteration). A checkpoint is written every ``checkpoint_every`` iterations, at the end, and when
    ``cancel()`` stops the run (then ``Cancelled``). ``anchor``: ties to a parent model (frozen layers,
    L2-SP, distillation; see :mod:`lnq_napari.training.anchor`). ``stop_at``: pause after that iteration
    with a checkpoint, as a cancel would but without raising; ``resume=True`` continues the schedule.
    """
    if not cases:
        raise LNQError("no training cases; give at least one case with annotated nodes")
    if iterations < 1:
        raise LNQError(f"iterations must be at least 1, got {iterations}")
    run = start_run(cases, Path(out_dir), iterations, device, seed, init_from, config, resume, anchor)
    rng = np.random.default_rng([seed, run.rank, run.start])
    sampler = make_sampler(run.config, cases, rng, progress if run.is_main else None)
    precision = Precision(run.device)
    log = TrainLog(run, progress, resume)
    run.model.train()
    it = run.start
    end = run.iterations if stop_at is None else min(int(stop_at), run.iterations)
    while it < end:
        if cancel is not None and cancel():
            save_state(run, it)
            raise Cancelled(f"training stopped at iteration {it}; resume with resume=True")
        loss, lr = train_step(run, sampler, precision, it)
        it += 1
        if not np.isfinite(loss):  # a diverged run stops here, not at the end
            _check_finite(run, it)
        log.update(it, loss, lr)
        if it % checkpoint_every == 0 and it < run.iterations:
            save_state(run, it)
    _check_finite(run, it)
    if it < run.iterations:  # paused at stop_at
        save_state(run, it)
        return run.out_dir
    _finish(run, it, log.ema)
    return run.out_dir


def _check_finite(run: TrainRun, it: int) -> None:
    """LNQError when the weights are no longer finite (the run diverged: nothing of it is worth keeping)."""
    if not weights_finite(run.net):
        raise LNQError(f"training diverged at iteration {it} (weights no longer finite); train again with a "
                       f"lower lr (this run: {run.config.train.lr:g})")


def weights_finite(net) -> bool:
    """Whether every parameter and buffer of ``net`` is finite (no NaN or infinity: training diverged)."""
    import torch

    return all(bool(torch.isfinite(t).all()) for t in net.state_dict().values() if t.is_floating_point())


def weights_digest(net) -> str:
    """sha256 of a network's parameters and buffers (to compare replicas)."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
