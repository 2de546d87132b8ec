"""Multi-process training (DDP, gloo on the CPU) under torchrun: both ranks end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys, torch
    torch.set_num_threads(1)
    from lnq_napari.phantom import make_case
    from lnq_napari.training.labels import label_states
    from lnq_napari.training.trainer import TrainingCase, train_model
    c = make_case(5, shape=(24, 64, 64), spacing=(6.0, 6.0, 12.0))
    cfg = {"architecture": {"name": "unet3d", "kwargs": {"features": [4, 8], "strides": [[1, 2, 2]]}},
           "preprocessing": {"target_spacing": [6.0, 6.0, 12.0]},
           "train": {"patch_size": [8, 16, 16], "batch_size": 1, "warmup": 0}}
    train_model([TrainingCase(c.case_id, c.ct, label_states(c.ct, c.partial))], sys.argv[1], iterations=3,
                device="cpu", config=cfg)
''')


@pytest.mark.slow
def test_ddp_two_ranks_identical_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    training = config["training"]
    assert training["world_size"] == 2
    digests = training["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert training["completed_iterations"] == 3
