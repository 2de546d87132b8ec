"""A model's registration holds the workspace lock only to pick its id, rename its copy into place and
write its entry: the copy (an nnU-Net model's checkpoints, up to GBs) is made before, so a label save
never waits for it; registrations at once get their own ids and folders."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace
from lnq_napari.workspace import lock as lock_module
from lnq_napari.workspace import registry as registry_module

CASE = "lnq2023-train-0000"
NNUNET_NAME = "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace of one case whose lock times out after 1 s."""
    for role, dtype in (("ct", np.int16), ("seg", np.uint8)):
        write_volume(tmp_path / "data" / f"{CASE}-{role}.nrrd", Volume(np.zeros((4, 6, 6), dtype)))
    monkeypatch.setattr(lock_module, "TIMEOUT_S", 1.0)
    monkeypatch.setattr(lock_module, "_LOCKS", {})
    return Workspace.init(tmp_path / "ws", tmp_path / "data")


def _nnunet_model(folder, tag: str):
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps({"plans_name": "nnUNetPlans"}))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"},
                                                     "labels": {"background": 0, "lymph_node": 1}}))
    for fold in ("0", "1"):
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(f"{tag} weights {fold}".encode())
    return folder


def _held_copy(monkeypatch, parties: int = 1) -> tuple[threading.Barrier, threading.Event]:
    """Make every file copy of a registration wait for ``go`` once ``parties`` copies have started
    (``started``, a barrier of them and the test)."""
    started, go = threading.Barrier(parties + 1, timeout=10), threading.Event()
    real = registry_module.shutil.copy2
    waiting = threading.local()

    def copy2(src, dst):
        if not getattr(waiting, "done", False):
            waiting.done = True
            started.wait()
            assert go.wait(10)
        return real(src, dst)

    monkeypatch.setattr(registry_module.shutil, "copy2", copy2)
    return started, go


def _run(target, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(_result(target, *args)))
    thread.start()
    return thread, out


def _result(target, *args):
    try:
        return target(*args)
    except Exception as exc:  # noqa: BLE001 - the test asserts on it
        return exc


def test_a_save_does_not_wait_for_a_model_being_copied_in(ws, tmp_path, monkeypatch):
    """A save while a registration copies its model: it waited behind the copy (the lock held for all of
    it) and, past the lock's timeout, was refused. It is saved at once; the model is registered after."""
    started, go = _held_copy(monkeypatch)
    model = _nnunet_model(tmp_path / "results" / NNUNET_NAME, "a")
    registering, registered = _run(ws.register_model, model)
    try:
        started.wait()
        labels = ws.ct_grid(CASE).with_array(np.ones((4, 6, 6), np.uint8))
        version = ws.add_label_version(CASE, labels, "correction")
    finally:
        go.set()
        registering.join(10)
    assert version == "v002" and [e["version"] for e in ws.journal("correction")] == ["v002"]
    assert registered == ["m001"] and ws.registry.check("m001")
    assert [p.name for p in ws.models_dir.iterdir() if p.name.startswith(".")] == []


def test_registrations_at_once_get_their_own_ids_and_folders(ws, tmp_path, monkeypatch):
    """Two registrations copying at the same time (neither waits for the other's copy): distinct ids,
    each folder the copy of its own model with matching checksums, no staging copy left."""
    started, go = _held_copy(monkeypatch, parties=2)
    models = [_nnunet_model(tmp_path / tag / NNUNET_NAME, tag) for tag in ("a", "b")]
    runs = [_run(ws.register_model, model) for model in models]
    started.wait()
    go.set()
    for thread, _ in runs:
        thread.join(10)
    ids = [out[0] for _, out in runs]
    assert sorted(ids) == ["m001", "m002"]
    for version, model in zip(ids, models):
        folder = ws.registry.check(version)
        assert folder == ws.models_dir / version / NNUNET_NAME
        assert (folder / "fold_1" / "checkpoint_final.pth").read_bytes() == (
            model / "fold_1" / "checkpoint_final.pth").read_bytes()
    assert [p.name for p in ws.models_dir.iterdir() if p.name.startswith(".")] == []


def test_a_failed_copy_leaves_no_version_nor_staging_copy(ws, tmp_path, monkeypatch):
    real = registry_module.shutil.copy2

    def full_disk(src, dst):
        if str(src).endswith("fold_1/checkpoint_final.pth"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(registry_module.shutil, "copy2", full_disk)
    with pytest.raises(OSError, match="No space"):
        ws.register_model(_nnunet_model(tmp_path / "a" / NNUNET_NAME, "a"))
    assert ws.models() == [] and ws.next_model_version() == "m001"
    assert [p.name for p in ws.models_dir.iterdir() if p.name.startswith(".")] == []
