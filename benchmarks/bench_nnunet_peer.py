"""Our predictor vs nnU-Net v2's 3d_fullres network on the same CT (CPU), as tiles x tile count.

    python benchmarks/bench_nnunet_peer.py [--tiles 3] [--threads 0]

nnU-Net's typical LNQ plan: PlainConvUNet, 6 stages (32-320 features), patch 64 x 128 x 224, tile step
0.5, no mirroring, on the whole 512 x 512 x 114 volume at 0.83 x 0.83 x 3 mm (its median spacing, so no
resampling). Its time is estimated as (median seconds per tile) x (number of tiles its sliding window
uses); ours is measured end to end (preprocessing, windows, resampling back, post-processing).
Needs ``nnunetv2`` (install with ``pip install nnunetv2 torch==<the installed torch>``); skips otherwise.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time


def _steps(image_size, tile_size, step: float) -> list[list[int]]:
    try:
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        return compute_steps_for_sliding_window(image_size, tile_size, step)
    except ImportError:  # the same rule, written out
        out = []
        for n, t in zip(image_size, tile_size):
            k = int(math.ceil((n - t) / (t * step))) + 1 if n > t else 1
            out.append([int(round(i * (n - t) / max(k - 1, 1))) for i in range(k)])
        return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiles", type=int, default=3, help="nnU-Net tiles to time")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours (median)")
    parser.add_argument("--model", default=None, help="our model folder (default: bundled)")
    args = parser.parse_args(argv)
    try:
        import nnunetv2  # noqa: F401
        from dynamic_network_architectures.architectures.unet import PlainConvUNet
    except ImportError:
        print("nnunetv2 is not installed: skipping the peer comparison "
              "(pip install nnunetv2 torch==$(python -c 'import torch;print(torch.__version__)'))")
        return 0
    import torch

    from lnq_napari.inference import Predictor
    from lnq_napari.phantom import make_case

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (114, 512, 512)
    ct = make_case(11, shape=shape, spacing=(0.83, 0.83, 3.0)).ct

    predictor = Predictor(args.model, device="cpu")
    ours_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predictor.predict(ct)
        ours_times.append(time.perf_counter() - t)
    ours = statistics.median(ours_times)

    net = PlainConvUNet(
        input_channels=1, n_stages=6, features_per_stage=[32, 64, 128, 256, 320, 320],
        conv_op=torch.nn.Conv3d,
        kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
        n_conv_per_stage=[2] * 6, num_classes=2, n_conv_per_stage_decoder=[2] * 5, conv_bias=True,
        norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True},
    ).eval()
    tile = (64, 128, 224)
    steps = _steps(shape, tile, 0.5)
    n_tiles = math.prod(len(s) for s in steps)
    x = torch.zeros(1, 1, *tile)
    times = []
    with torch.inference_mode():
        for _ in range(args.tiles):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    per_tile = statistics.median(times)
    peer = per_tile * n_tiles
    print(f"volume 512x512x114 at 0.83x0.83x3 mm, CPU, {torch.get_num_threads()} threads")
    print(f"ours (lnq-napari {predictor.version}): median {ours:.1f} s end to end "
          f"({', '.join(f'{t:.1f}' for t in ours_times)})")
    print(f"nnU-Net v2 PlainConvUNet 3d_fullres: median {per_tile:.1f} s/tile "
          f"({', '.join(f'{t:.1f}' for t in times)}) x {n_tiles} tiles = {peer:.0f} s "
          f"(network only, no mirroring)")
    print(f"ratio nnU-Net / ours: {peer / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
