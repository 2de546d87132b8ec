"""Train the bundled model (or the naive baseline) on phantom data: the recipe behind the shipped weights.

    lnq-napari phantom /tmp/lnq-v3/train --cases 60 --seed 11
    python benchmarks/train_bundled.py --probe 4.5 --share 2 --device cuda      # prints N
    python benchmarks/train_bundled.py --data /tmp/lnq-v3/train --out /tmp/lnq-v3/ours --device cuda \
        --iterations N [--stop-after 6] [--naive]
    # a continued stage from the bundled weights on several folders (their cases together):
    python benchmarks/train_bundled.py --data /tmp/s/default,/tmp/s/lowdose --out /tmp/s/styles \
        --init-from lnq_napari/model/bundled --lr 5e-4 --warmup 0 --unenhance 0.8 --iterations N

Same network, label states and loss as ``lnq-napari train``; larger patches and batches than its CPU
defaults. ``--probe M`` times a few optimiser steps and a patch batch and prints how many iterations
fill M minutes when ``--share`` K runs share the device; with ``--data`` its patches come from the first
case of each folder through the training sampler (augmentations included), else from random data.
``--stop-after`` stops a run that overruns, with its last checkpoint saved. ``--data`` takes
comma-separated folders; when they hold the same case ids (phantom folders written with the same
prefix) each id is prefixed with its folder's name. ``--init-from MODEL`` starts from that model
folder's weights (its architecture, preprocessing and post-processing too), as the model card's stages
2-5 did; ``--warmup`` and ``--unenhance`` override the train defaults (50 warm-up iterations, unenhance
probability 0.8). Prints the iterations, the time and the final loss.

Before shipping new weights, keep their figures on the forgetting check's cases in the model folder
(``check_figures.json``; ``tests/test_forgetting.py`` fails on a bundled model without current ones):

    python benchmarks/train_bundled.py --ship-check-figures lnq_napari/model/bundled
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled
from lnq_napari.model.config import ModelConfig
from lnq_napari.training.sampler import PatchSampler, PatchSource
from lnq_napari.training.trainer import TrainingCase, load_training_cases, train_model


def _probe_cases(data: str, naive: bool) -> list[TrainingCase]:
    """The first case of each comma-separated folder, for a probe that samples as training will."""
    from lnq_napari.io.layout import scan_cases
    from lnq_napari.training.trainer import load_case

    folders = [f for f in data.split(",") if f.strip()]
    return [dataclasses.replace(load_case(scan_cases(f, require="seg")[0], naive), case_id=f"{k}")
            for k, f in enumerate(folders)]


def _probe_rate(config: ModelConfig, device: str, share: int,
                cases: list[TrainingCase] | None = None) -> float:
    """Iterations per second: timed optimiser steps on random data plus timed patch sampling.

    With ``cases`` the patches come from them through the training sampler (the config's augmentations,
    the unenhance one included, which costs milliseconds per patch); else from random data.
    """
    import torch

    from lnq_napari.model.network import build_network
    from lnq_napari.training.losses import masked_dice_ce
    from lnq_napari.training.trainer import make_sampler

    dev = resolve_device(device)
    batch, patch = int(config.train.batch_size), tuple(config.train.patch_size)
    rng = np.random.default_rng(0)
    if cases:
        sampler = make_sampler(config, cases, rng)
    else:
        image = rng.normal(size=(100, 160, 200)).astype(np.float32)
        states = rng.integers(-1, 2, size=image.shape).astype(np.int8)
        sampler = PatchSampler([PatchSource.build("probe", image, states, rng)], patch, 0.5, -2.0, rng)
    sample_times = []
    for _ in range(10 if cases else 5):
        t = time.perf_counter()
        sampler.sample(batch)
        sample_times.append(time.perf_counter() - t)
    net = build_network(config.architecture.name, config.architecture.kwargs).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, *patch, device=dev)
    s = torch.randint(-1, 2, (batch, 1, *patch), device=dev, dtype=torch.int8)
    amp = dev.type == "cuda"
    step_times = []
    for k in range(15):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = masked_dice_ce(net(x).float(), s, 1.0)
        loss.backward()
        opt.step()
        float(loss.detach())
        if k >= 5:
            step_times.append(time.perf_counter() - t)
    t_step, t_sample = statistics.median(step_times), statistics.median(sample_times)
    print(f"probe: step {t_step * 1000:.1f} ms, batch sampling {t_sample * 1000:.1f} ms", file=sys.stderr)
    return 1.0 / (t_step * max(share, 1) + t_sample)


def read_folders(data: str, naive: bool, workers: int | None) -> list[TrainingCase]:
    """The training cases of the comma-separated folders in ``data``, ids made unique across folders."""
    folders = [Path(f) for f in data.split(",") if f.strip()]
    per_folder = [load_training_cases(f, naive=naive, workers=workers) for f in folders]
    ids = [c.case_id for cases in per_folder for c in cases]
    if len(set(ids)) == len(ids):
        return [c for cases in per_folder for c in cases]
    names = [f.resolve().name for f in folders]
    if len(set(names)) != len(names):
        raise SystemExit(f"--data: folders {names} share both case ids and names; give distinct folders")
    return [dataclasses.replace(c, case_id=f"{name}/{c.case_id}")
            for name, cases in zip(names, per_folder) for c in cases]


def _ship_check_figures(model: Path, device: str) -> int:
    """Predict the forgetting check's cases of a lineage rooted at ``model`` and keep the figures in it."""
    from lnq_napari.finetuning.forgetting import check_data, ship_check_figures
    from lnq_napari.inference import Predictor
    from lnq_napari.model.config import FinetuneConfig
    from lnq_napari.workspace.registry import bundled_key

    data = check_data(FinetuneConfig(), bundled_key(model), model)
    print(ship_check_figures(Predictor, model, resolve_device(device), data))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="training folder(s), comma-separated: the cases of all")
    parser.add_argument("--out")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--probe", type=float, default=None, metavar="MINUTES",
                        help="print the iterations that fill this many minutes, then exit")
    parser.add_argument("--share", type=int, default=1, help="runs sharing the device (for --probe)")
    parser.add_argument("--stop-after", type=float, default=None, metavar="MINUTES",
                        help="stop training after this many minutes (checkpoint saved)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch", default="32,96,96", help="z,y,x voxels at the model spacing")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default: the config's)")
    parser.add_argument("--unenhance", type=float, default=None,
                        help="unenhance augmentation probability per patch (default: the config's)")
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="start from this model folder's weights (a continued stage)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes reading cases")
    parser.add_argument("--naive", action="store_true", help="unlabelled voxels = background (baseline)")
    parser.add_argument("--ship-check-figures", metavar="MODEL", default=None,
                        help="write MODEL's figures on the forgetting check's cases into it, then exit")
    args = parser.parse_args(argv)
    if args.ship_check_figures:
        return _ship_check_figures(Path(args.ship_check_figures), args.device)
    overrides = {"naive": args.naive, "train": {
        "batch_size": args.batch_size, "patch_size": [int(p) for p in args.patch.split(",")], "lr": args.lr}}
    for key in ("warmup", "unenhance"):
        if getattr(args, key) is not None:
            overrides["train"][key] = getattr(args, key)
    if args.probe is not None:
        cases = _probe_cases(args.data, args.naive) if args.data else None
        rate = _probe_rate(ModelConfig().merged(overrides), args.device, args.share, cases)
        print(f"estimated {rate:.2f} it/s per run", file=sys.stderr)
        print(max(50, int(rate * args.probe * 60)))
        return 0
    if not (args.data and args.out and args.iterations):
        parser.error("give --data, --out and --iterations (or --probe MINUTES)")
    t0 = time.time()
    cases = read_folders(args.data, args.naive, args.workers)
    print(f"read {len(cases)} cases in {time.time() - t0:.0f} s", flush=True)
    iterations = args.iterations
    deadline = None if args.stop_after is None else time.time() + args.stop_after * 60

    last = [time.time()]

    def progress(fraction: float, message: str) -> None:
        if time.time() - last[0] > 20 or fraction >= 1.0:
            last[0] = time.time()
            print(f"{time.time() - t0:6.0f} s  {message}", flush=True)

    t1 = time.time()
    try:
        train_model(cases, args.out, iterations, device=args.device, seed=args.seed, config=overrides,
                    init_from=args.init_from,
                    progress=progress, checkpoint_every=500,
                    cancel=(lambda: time.time() > deadline) if deadline else None)
        stopped = False
    except Cancelled as exc:
        print(f"deadline: {exc}", flush=True)
        stopped = True
    cfg = json.loads((Path(args.out) / "config.json").read_text())
    done = cfg["training"].get("completed_iterations")
    print(f"trained {done}/{iterations} iterations in {time.time() - t1:.0f} s "
          f"({'stopped at the deadline' if stopped else 'schedule complete'}), "
          f"final loss {cfg['training'].get('final_loss_ema')}, version {cfg['version']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
