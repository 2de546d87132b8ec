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


def test_the_process_group_is_destroyed_at_exit_unless_nccl_exits_on_an_error():
    """On NCCL a destroy after an exception may wait for a pending collective until the timeout; gloo's
    group is always ended (the interpreter's teardown aborts the rank)."""
    from lnq_napari.training.trainer import destroy_at_exit

    assert destroy_at_exit("gloo", failed=False) and destroy_at_exit("gloo", failed=True)
    assert destroy_at_exit("nccl", failed=False) and not destroy_at_exit("nccl", failed=True)


def test_an_exception_leaving_train_model_or_the_interpreter_is_seen_at_exit(tmp_path, monkeypatch):
    """A failed train_model notes it (a CLI may catch the error and exit); an uncaught exception sets
    ``sys.last_value`` before the exit handlers run."""
    from lnq_napari.errors import LNQError
    from lnq_napari.training import trainer

    monkeypatch.setattr(trainer, "_FAILED", [False])
    with pytest.raises(LNQError):
        trainer.train_model([], tmp_path, iterations=1)
    assert trainer._FAILED[0]
    script = tmp_path / "uncaught.py"
    script.write_text("import atexit, sys\n"
                      "atexit.register(lambda: print('seen', getattr(sys, 'last_value', None) is not None))\n"
                      "raise RuntimeError('a rank fails')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "seen True"
