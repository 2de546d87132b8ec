"""The trainer: preprocess cases once, sample patches, masked Dice+CE, checkpoints, resume, DDP.

``train_model`` is the one entry point (``api.train`` and the active-learning fine-tune call it).
Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel: nccl on CUDA, gloo on
the CPU; every rank draws its own patches, rank 0 writes checkpoints.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.io.volume import Volume
from lnq_napari.preprocess import DEFAULT_PREPROCESSING
from lnq_napari.training.labels import DEFAULT_STATES

DEFAULT_CONFIG: dict = {
    "architecture": {
        "name": "unet3d",
        "kwargs": {
            "in_channels": 1,
            "out_channels": 1,
            "features": [8, 16, 32, 64],
            "strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2]],
            "kernels": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        },
    },
    "preprocessing": DEFAULT_PREPROCESSING,
    "inference": {
        "patch_size": [32, 96, 96],  # z, y, x voxels at the target spacing
        "overlap": 0.25,
        "sw_batch_size": 1,
        "threshold": 0.5,
        "min_component_mm3": 300.0,  # components smaller than this are dropped (a 10 mm node is 524 mm3)
        "max_mean_hu": 100.0,  # components brighter on average are dropped (bone, enhanced vessels)
        "mediastinum_margin_mm": None,  # a number: drop components outside the lungs' hull grown by it
    },
    "train": {
        "patch_size": [24, 64, 64],
        "batch_size": 2,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "fg_fraction": 0.5,
        "focus_fraction": 0.0,  # share of node-centred patches moved to focus voxels (a reviewer's edits)
        "dice_weight": 1.0,
        "flip_x": True,
        "intensity_jitter": 0.1,
        "unenhance": 0.8,  # probability of showing a patch's enhanced structures unenhanced, as background
        "warmup": 50,
    },
    "states": DEFAULT_STATES,
    "naive": False,
}

STATE_DIR = "train_state"
FOCUS_CODE = 4  # states -1/0/1 + FOCUS_CODE mark focus voxels while they are resampled


@dataclass
class TrainingCase:
    """A CT and its label states on the CT grid (1 node, 0 known background, -1 unknown).

    ``focus`` (bool, CT grid, optional): voxels worth more patches, e.g. what a reviewer edited;
    the train setting ``focus_fraction`` centres that share of patches on them.
    """

    case_id: str
    ct: Volume
    states: np.ndarray
    focus: np.ndarray | None = None


def _merge(base: dict, override: dict | None) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_pair(ct_path: Path, seg_path: Path) -> tuple[Volume, Volume]:
    try:
        from lnq_napari.io.readers import read_labels, read_volume
    except ImportError:  # the I/O module is not there yet: plain SimpleITK
        import SimpleITK as sitk

        ct = Volume.from_sitk(sitk.ReadImage(str(ct_path)))
        seg = Volume.from_sitk(sitk.ReadImage(str(seg_path)))
        if not seg.same_grid(ct):
            seg = Volume.from_sitk(sitk.Resample(seg.to_sitk(), ct.to_sitk(), sitk.Transform(),
                                                 sitk.sitkNearestNeighbor, 0))
        return ct, seg
    ct = read_volume(ct_path)
    return ct, read_labels(seg_path, reference=ct)


def find_pairs(data_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(case_id, ct, seg)`` for each ``*-ct.nrrd`` in an LNQ-layout folder that has a ``*-seg.nrrd``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise LNQError(f"training data folder {data_dir} does not exist; "
                       "pass a folder of *-ct.nrrd/*-seg.nrrd")
    pairs = []
    for ct_path in sorted(data_dir.glob("*-ct.nrrd")):
        case_id = ct_path.name[: -len("-ct.nrrd")]
        seg_path = ct_path.with_name(f"{case_id}-seg.nrrd")
        if seg_path.is_file():
            pairs.append((case_id, ct_path, seg_path))
    if not pairs:
        raise LNQError(f"no *-ct.nrrd with a matching *-seg.nrrd in {data_dir}; use the LNQ file layout")
    return pairs


def _load_case(case_id: str, ct_path: Path, seg_path: Path, naive: bool,
               states_options: dict | None) -> TrainingCase:
    from lnq_napari.training.labels import label_states, naive_states

    ct, seg = _read_pair(ct_path, seg_path)
    states = naive_states(seg) if naive else label_states(ct, seg, options=states_options)
    return TrainingCase(case_id, ct, states)


def load_training_cases(data_dir: str | Path, naive: bool = False, states_options: dict | None = None,
                        progress: Callable[[float, str], None] | None = None,
                        workers: int | None = None) -> list[TrainingCase]:
    """Read an LNQ-layout folder into training cases with label states (or naive states).

    Cases are read in ``workers`` processes (default: up to 4, one per CPU); the order is the folder's.
    """
    pairs = find_pairs(data_dir)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(pairs)))
    args = [(cid, ct, seg, naive, states_options) for cid, ct, seg in pairs]
    cases: list[TrainingCase] = []
    if workers == 1:
        results = (_load_case(*a) for a in args)
        pool = None
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_load_case, *zip(*args))
    try:
        for case in results:
            cases.append(case)
            if progress:
                progress(len(cases) / len(pairs), f"read {case.case_id}")
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


def resolve_device(device: str = "auto"):
    """A torch device from "auto" | "cpu" | "cuda" | "cuda:N"; LNQError when CUDA is asked but absent."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LNQError("device 'cuda' was asked but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise LNQError(f"unknown device {device!r}; use auto, cpu or cuda")


def _init_distributed(device):
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
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _version(config: dict, fingerprint: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M")
    parent = config.get("parent_version")
    base = f"{parent}+ft" if parent else "lnq-unet"
    return f"{base}-{stamp}-{fingerprint[:8]}"


def _prepare_sources(cases, prep, rng, progress):
    from lnq_napari.preprocess import prepare
    from lnq_napari.training.sampler import PatchSource

    sources = []
    for k, case in enumerate(cases):
        if case.states.shape != case.ct.shape:
            raise LNQError(f"case {case.case_id}: states {case.states.shape} are not on the CT grid "
                           f"{case.ct.shape}; compute them on the CT grid")
        labels = np.asarray(case.states, dtype=np.int8)
        if case.focus is not None:  # resampled together with the states: focus adds FOCUS_CODE
            labels = labels + np.where(np.asarray(case.focus, bool), FOCUS_CODE, 0).astype(np.int8)
        p = prepare(case.ct, prep, labels=labels)
        focus = p.labels >= FOCUS_CODE - 1 if case.focus is not None else None
        states = p.labels if focus is None else (p.labels - np.where(focus, FOCUS_CODE, 0)).astype(np.int8)
        sources.append(PatchSource.build(case.case_id, p.image, states, rng, focus=focus))
        if progress:
            progress(0.0, f"preprocessed {k + 1}/{len(cases)} cases")
    return sources


def _lr(it: int, total: int, base: float, warmup: int) -> float:
    if it < warmup:
        return base * (it + 1) / warmup
    return base * (1.0 - it / max(total, 1)) ** 0.9


def train_model(
    cases: Sequence[TrainingCase],
    out_dir: str | Path,
    iterations: int,
    device: str = "auto",
    seed: int = 0,
    init_from: str | Path | None = None,
    config: dict | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    resume: bool = False,
    checkpoint_every: int = 200,
) -> Path:
    """Train (or fine-tune, with ``init_from``) a model on ``cases``; returns the model folder ``out_dir``.

    ``config`` overrides :data:`DEFAULT_CONFIG` section by section. With ``init_from`` the architecture,
    preprocessing and inference settings come from that model. ``resume=True`` continues from the last
    checkpoint in ``out_dir`` (weights, optimizer, iteration). A checkpoint is written every
    ``checkpoint_every`` iterations, at the end, and when ``cancel()`` stops the run (then ``Cancelled``).
    """
    import torch

    from lnq_napari.model.checkpoint import load_state, read_config, save_checkpoint
    from lnq_napari.model.network import build_network
    from lnq_napari.preprocess import pad_value
    from lnq_napari.training.losses import masked_dice_ce
    from lnq_napari.training.sampler import PatchSampler, Unenhance

    if not cases:
        raise LNQError("no training cases; give at least one case with annotated nodes")
    if iterations < 1:
        raise LNQError(f"iterations must be at least 1, got {iterations}")
    out_dir = Path(out_dir)
    state_dir = out_dir / STATE_DIR
    device_t = resolve_device(device)
    rank, world, device_t = _init_distributed(device_t)

    cfg = _merge(DEFAULT_CONFIG, config)
    init_state = None
    start = 0
    if resume:
        if not (state_dir / "state.pt").is_file():
            raise LNQError(f"nothing to resume in {out_dir} (no {STATE_DIR}/state.pt); "
                           "train without --resume")
        cfg = read_config(out_dir)
        init_state, _ = load_state(out_dir)
    elif init_from is not None:
        init_state, parent = load_state(init_from)
        for key in ("architecture", "preprocessing", "inference"):
            cfg[key] = copy.deepcopy(parent[key])
        cfg["parent_version"] = parent.get("version")
    fingerprint, summary = data_fingerprint(cases)
    if not resume:
        cfg["version"] = cfg.get("version_override") or _version(cfg, fingerprint)
        cfg["training"] = {
            "iterations": int(iterations), "seed": int(seed), "world_size": world,
            "data_fingerprint": fingerprint, "data": summary, "naive": bool(cfg.get("naive")),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    import lnq_napari

    cfg["lnq_napari_version"] = lnq_napari.__version__

    torch.manual_seed(seed)
    net = build_network(cfg["architecture"]["name"], cfg["architecture"]["kwargs"])
    if init_state is not None:
        net.load_state_dict(init_state)
    net.to(device_t)
    tcfg = cfg["train"]
    opt = torch.optim.AdamW(net.parameters(), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    if resume:
        saved = torch.load(state_dir / "state.pt", map_location=device_t, weights_only=True)
        opt.load_state_dict(saved["optimizer"])
        start = int(saved["iteration"])
        iterations = int(cfg["training"]["iterations"])
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device_t.index] if device_t.type == "cuda" else None)

    rng = np.random.default_rng([seed, rank, start])
    sources = _prepare_sources(cases, cfg["preprocessing"], rng, progress if rank == 0 else None)
    high_hu = float({**DEFAULT_STATES, **cfg.get("states", {})}["high_hu"])
    unenhance = Unenhance.from_hu(float(tcfg.get("unenhance", 0.0)), cfg["preprocessing"], high_hu)
    sampler = PatchSampler(sources, tcfg["patch_size"], tcfg["fg_fraction"], pad_value(cfg["preprocessing"]),
                           rng, flip_x=tcfg["flip_x"], intensity_jitter=tcfg["intensity_jitter"],
                           unenhance=unenhance, focus_fraction=float(tcfg.get("focus_fraction", 0.0)))
    use_amp = device_t.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def save(it: int) -> None:
        if rank != 0:
            return
        cfg["training"]["completed_iterations"] = it
        save_checkpoint(out_dir, net.state_dict(), cfg)
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / "state.pt.tmp"
        torch.save({"optimizer": opt.state_dict(), "iteration": it}, tmp)
        os.replace(tmp, state_dir / "state.pt")

    log_path = out_dir / "train_log.csv"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume or not log_path.exists():
            log_path.write_text("iteration,loss,lr,seconds\n")
    model.train()
    t0 = time.time()
    ema = None
    it = start
    while it < iterations:
        if cancel is not None and cancel():
            save(it)
            raise Cancelled(f"training stopped at iteration {it}; resume with resume=True")
        lr = _lr(it, iterations, tcfg["lr"], tcfg.get("warmup", 0))
        for group in opt.param_groups:
            group["lr"] = lr
        images, states = sampler.sample(int(tcfg["batch_size"]))
        x = torch.from_numpy(images).to(device_t, non_blocking=True)
        s = torch.from_numpy(states).to(device_t, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_t.type, dtype=amp_dtype, enabled=use_amp):
            logits = model(x)
        loss = masked_dice_ce(logits.float(), s, tcfg["dice_weight"])
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        scaler.step(opt)
        scaler.update()
        it += 1
        value = float(loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        if rank == 0:
            rate = (it - start) / max(time.time() - t0, 1e-9)
            if progress and (it % 5 == 0 or it == iterations):
                progress(it / iterations, f"it {it}/{iterations} loss {ema:.4f} {rate:.2f} it/s")
            if it % 10 == 0 or it == iterations:
                with open(log_path, "a", newline="") as handle:
                    csv.writer(handle).writerow([it, f"{ema:.5f}", f"{lr:.6g}", f"{time.time() - t0:.1f}"])
            if it % checkpoint_every == 0 and it < iterations:
                save(it)
    cfg["training"]["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    cfg["training"]["final_loss_ema"] = None if ema is None else round(ema, 5)
    if world > 1:
        import torch.distributed as dist

        sums: list = [None] * world
        dist.all_gather_object(sums, weights_digest(net))
        cfg["training"]["rank_weight_digests"] = sums
        if len(set(sums)) != 1:
            raise RuntimeError(f"DDP ranks ended with different weights: {sums}")
    save(it)
    if world > 1:
        dist.barrier()
    return out_dir


def weights_digest(net) -> str:
    """sha256 of a network's parameters and buffers (to compare replicas)."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
