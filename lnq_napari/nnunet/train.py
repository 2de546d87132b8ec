"""Train an nnU-Net fold in a subprocess: nnU-Net's own preprocessing and trainer, with a short schedule
(iterations per epoch, epochs) and optional pretrained weights (the parent's checkpoint), for tests,
the CPU check of the whole road and the first step of fine-tuning an nnU-Net model.

For full trainings use ``nnUNetv2_train`` (README: Train on LNQ2023 with nnU-Net). The short trainer is
nnU-Net's default trainer with its schedule shortened; it keeps the name ``nnUNetTrainer`` so the model
folder and checkpoints read as nnU-Net's own (the network, loss and augmentation are unchanged).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.nnunet.deps import require_nnunet
from lnq_napari.nnunet.pools import one_process_here
from lnq_napari.nnunet.tiny import CONFIGURATION, PLANS, TRAINER
from lnq_napari.processes import end_with_parent

#: How long a stopped training child may take to end before it is killed (seconds).
STOP_SECONDS = 30.0
_EPOCH = re.compile(r"Epoch (\d+)\s*$")  # nnU-Net's log line "<time>: Epoch N"


def train_fold(
    dataset_folder: str | Path, preprocessed: str | Path, results: str | Path, fold: str = "all",
    iterations: int = 250, epochs: int = 1, val_iterations: int = 1, pretrained: str | Path | None = None,
    keep_output: bool = False, device: str = "cpu", plans: str = PLANS, configuration: str = CONFIGURATION,
    progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None,
) -> Path:
    """Preprocess (once) and train one fold of a planned dataset; returns the model folder.

    The dataset must be planned (``<plans>.json`` in ``<preprocessed>/<dataset>``). ``pretrained``: a
    checkpoint to start from, without its output layers (nnU-Net's pretraining route, for another label
    set) unless ``keep_output`` (the same labels: a fine-tune starts from the very model). Runs in a
    subprocess; ``cancel`` stops it (Cancelled), a failure is an LNQError with nnU-Net's last line.
    """
    require_nnunet("training an nnU-Net model")
    dataset_folder = Path(dataset_folder).resolve()
    job = {"parent": os.getpid(), "dataset": dataset_folder.name, "fold": str(fold),
           "iterations": int(iterations), "epochs": int(epochs), "val_iterations": int(val_iterations),
           "device": device, "plans": plans, "configuration": configuration,
           "pretrained": None if pretrained is None else str(Path(pretrained).resolve()),
           "keep_output": bool(keep_output)}
    env = {**os.environ, "nnUNet_raw": str(dataset_folder.parent),
           "nnUNet_preprocessed": str(Path(preprocessed).resolve()),
           "nnUNet_results": str(Path(results).resolve()), "nnUNet_n_proc_DA": "0",
           "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    # nnU-Net prints non-ASCII; under an ASCII locale a strict decode would kill the reader, fill the pipe
    # and hang the child
    proc = subprocess.Popen([sys.executable, "-m", "lnq_napari.nnunet.train", json.dumps(job)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            encoding="utf-8", errors="replace")
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip())
            match = _EPOCH.search(line)
            if match and progress:
                progress(int(match.group(1)) / max(int(epochs), 1), line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            if cancel is not None and cancel():
                raise Cancelled("nnU-Net training cancelled")
            reader.join(0.5)
    except BaseException:  # Cancel, Ctrl-C, SIGTERM to this process only: the child must be gone before
        stop(proc)  # the caller's clean-up removes the folders it writes in
        raise
    reader.join()
    if proc.returncode != 0:
        last = next((x for x in reversed(lines) if x.strip()), "no output")
        raise LNQError(f"nnU-Net training failed (exit {proc.returncode}): {last[:200]}")
    if progress:
        progress(1.0, "done")
    return Path(results).resolve() / dataset_folder.name / f"{TRAINER}__{plans}__{configuration}"


def stop(proc: subprocess.Popen, timeout: float | None = None) -> None:
    """End ``proc``: SIGTERM, then SIGKILL when it is still there after ``timeout`` seconds (default
    :data:`STOP_SECONDS`); returns once it has exited."""
    proc.terminate()
    try:
        proc.wait(STOP_SECONDS if timeout is None else timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except BaseException:  # a second Ctrl-C while it ends: no more waiting
        proc.kill()
        raise


def _short_trainer(iterations: int, val_iterations: int, epochs: int):
    """nnU-Net's default trainer with a short schedule (same name, so its folder reads as the default)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer as Default

    class nnUNetTrainer(Default):  # noqa: N801 - nnU-Net finds trainers by this name
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")):  # noqa: B008 - nnU-Net's signature
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = val_iterations
            self.num_epochs = epochs

    return nnUNetTrainer


def _main(job: dict) -> None:
    """The subprocess: preprocess the configuration if needed, then train with the short schedule; it ends
    when the process that started it dies (a killed fine-tune left it training on its own for minutes)."""
    end_with_parent(job["parent"])
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess

    pre = Path(os.environ["nnUNet_preprocessed"]) / job["dataset"]
    plans = json.loads((pre / f"{job['plans']}.json").read_text(encoding="utf-8"))
    dataset_file = pre / "dataset.json" if (pre / "dataset.json").is_file() \
        else Path(os.environ["nnUNet_raw"]) / job["dataset"] / "dataset.json"
    dataset_json = json.loads(dataset_file.read_text(encoding="utf-8"))
    dataset_id = int(job["dataset"][7:10])
    with one_process_here(1):  # one worker each: a thread here, not a spawned process importing torch again
        if not (pre / "dataset_fingerprint.json").is_file():
            # the data's own fingerprint, as nnU-Net's pretraining route extracts it before moving the plans
            from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints

            extract_fingerprints([dataset_id], num_processes=1)
        data_id = plans["configurations"][job["configuration"]].get("data_identifier")
        if not data_id or not (pre / data_id).is_dir():
            preprocess([dataset_id], job["plans"], [job["configuration"]], [1],
                       show_progress_bar=False)
    fold = job["fold"] if job["fold"] == "all" else int(job["fold"])
    plans["continue_training"] = False  # what nnUNetv2_train passes to the trainer inside the plans
    trainer = _short_trainer(job["iterations"], job["val_iterations"], job["epochs"])(
        plans, job["configuration"], fold, dataset_json, torch.device(job["device"]))
    if job["pretrained"]:
        trainer.initialize()
        load_pretrained(trainer.network, job["pretrained"], keep_output=bool(job.get("keep_output")))
    trainer.run_training()


def load_pretrained(network, checkpoint: str | Path, keep_output: bool = False) -> None:
    """nnU-Net's ``load_pretrained_weights``, the checkpoint read onto the CPU: every layer of ``network``
    but the output layers (``seg_layers``) from ``checkpoint``, which must hold them in the same shapes
    (RuntimeError naming the first that differs); the output layers too where their shapes match when
    ``keep_output`` (nnU-Net's route leaves them freshly drawn: the fine-tune starts from the parent
    itself). nnU-Net's own loads without ``map_location``: a checkpoint saved on a GPU failed to load on a
    machine without one."""
    import torch

    module = getattr(network, "module", network)  # DDP
    module = getattr(module, "_orig_mod", module)  # torch.compile
    saved = torch.load(str(checkpoint), map_location="cpu", weights_only=False)["network_weights"]
    own = module.state_dict()
    for key, value in own.items():
        if ".seg_layers." not in key and (key not in saved or saved[key].shape != value.shape):
            raise RuntimeError(f"the pretrained weights {checkpoint} do not fit the network (layer {key}: "
                               f"{tuple(saved[key].shape) if key in saved else 'missing'}, network "
                               f"{tuple(value.shape)})")
    taken = {k: v for k, v in saved.items() if k in own and (
        ".seg_layers." not in k or (keep_output and own[k].shape == v.shape))}
    module.load_state_dict({**own, **taken})


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
