"""Reliability figures: SIGKILL at random moments during saves, autosaves, `workspace activate`, `next`
and `finetune`, and hostile files fuzzed per reader. Prints trials, losses and outcome counts (target:
0 losses, 0 exceptions other than LNQError).

    python benchmarks/bench_reliability.py                # 100 kills per operation, 1,000 files per reader
    python benchmarks/bench_reliability.py --trials 10 --fuzz 0   # kills only, quick

A kill trial forks a worker (already imported, so the kill lands in the work, not in start-up) that
repeats the operation and reports each one it completed through a pipe; the parent kills it with
SIGKILL after a random delay, then checks the workspace: every reported save readable and holding
its edit, every visible version complete (size and sha256 as committed), the journal parsing with a
line for each reported save and each visible correction, the autosave file complete and not older than
the last reported one, the registry parsing, its active version complete and not older than the last
reported activation;
after a kill during `next` (ranking cases with a tiny model): the score cache parsing, each score naming
a committed prediction version of its model, one prediction version per case and model, a reported
ranking journaled with a score for every case, and an interrupted ranking resumed by the next one.
POSIX only (fork, SIGKILL).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lnq_napari.api import save_labels
from lnq_napari.cli import main as cli_main
from lnq_napari.io.atomic import STALE_SECONDS, is_temp
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.readers import read_labels, write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.autosave import autosave_path, write_autosave

SHAPE = (24, 64, 64)  # big enough that a write takes a few milliseconds: kills land inside writes
GRID = dict(spacing=(0.8, 0.8, 2.0))
OPERATIONS = ("save", "autosave", "activate", "next")


def edit(seed: int) -> Volume:
    """The label volume of edit ``seed``: one voxel set, so a file tells which edit it holds."""
    array = np.zeros(SHAPE, np.uint8)
    array.flat[(seed * 7919) % array.size] = 1
    return Volume(array, **GRID)


def holds(volume: Volume, seed: int) -> bool:
    return np.array_equal(volume.array, edit(seed).array)


def make_workspace(folder: Path) -> Workspace:
    """Two cases and three registered model versions (small stand-ins: only hashed, never loaded)."""
    data = folder / "data"
    for i in range(2):
        write_volume(data / f"lnq2023-train-{i:04d}-ct.nrrd", Volume(np.zeros(SHAPE, np.int16), **GRID))
    ws = Workspace.init(folder / "ws", data)
    for _ in range(3):
        ws.register_model(fake_model(folder / "model"))
    return ws


def fake_model(folder: Path) -> Path:
    """A model folder whose config records its weights' sha256 (enough for the registry's checks)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.safetensors").write_bytes(os.urandom(256 * 1024))
    config = {"format": "lnq-napari-model", "weights_sha256": sha256_file(folder / "weights.safetensors")}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ------------------------------------------------------------------ workers (run in the forked child)
def _report(fd: int, *fields) -> None:
    os.write(fd, (" ".join(str(f) for f in fields) + "\n").encode())


def work_save(root: Path, fd: int, start: int) -> None:
    for seed in range(start, start + 10**6):
        case = f"lnq2023-train-{seed % 2:04d}"
        saved = save_labels(edit(seed), case, workspace=root, edits=1, seed=seed)
        _report(fd, case, saved.version, seed)


def work_autosave(root: Path, fd: int, start: int) -> None:
    for seed in range(start, start + 10**6):
        write_autosave(edit(seed), root / "autosave", "lnq2023-train-0000", extra={"lnq_seed": seed})
        _report(fd, seed)


CYCLE = ("m001", "m002", "m003", "bundled")


def work_activate(root: Path, fd: int, start: int) -> None:
    """Activate the versions of :data:`CYCLE` in turn from ``start``; every 4th turn first registers a
    new version (a copy the kill may cut), which the registry must never list half-copied."""
    ws = Workspace.open(root)
    for k in range(start, start + 10**6):
        if k % 4 == 0:
            ws.register_model(fake_model(root.parent / f"model-{os.getpid()}"))
        version = CYCLE[k % len(CYCLE)]
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["workspace", "activate", str(root), version])
        if code != 0:
            os._exit(3)
        _report(fd, version)


WORKERS = {"save": work_save, "autosave": work_autosave, "activate": work_activate}


def run_trial(op: str, root: Path, delay: float, start: int) -> list[list[str]]:
    """Fork a worker doing ``op``, SIGKILL it after ``delay`` s; returns the operations it reported."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: work until killed
        os.close(read_end)
        try:
            WORKERS[op](root, write_end, start)
        finally:
            os._exit(1)
    os.close(write_end)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    chunks = []
    while block := os.read(read_end, 1 << 16):
        chunks.append(block)
    os.close(read_end)
    return [line.split() for line in b"".join(chunks).decode().splitlines() if line.strip()]


# ------------------------------------------------------------------ checks (in the parent, after a kill)
def check_save(ws: Workspace, reported: list[list[str]]) -> tuple[int, list[str]]:
    """(losses, problems): reported saves unreadable or holding another edit; visible versions incomplete
    or without their journal line (a kill between the commit and the line: written when reopened)."""
    problems = []
    losses = 0
    for case, version, seed in reported:
        try:
            ok = holds(ws.read_labels(case, version), int(seed))
        except Exception as exc:  # noqa: BLE001 - a loss whatever the reason
            ok, problems = False, problems + [f"{case} {version}: {exc}"]
        losses += not ok
    for case in ws.case_ids():
        for prov in ws.versions(case):
            path = ws.label_path(case, prov["version"])
            if prov.get("sha256") and sha256_file(path) != prov["sha256"]:
                problems.append(f"{case} {prov['version']}: visible but not as committed")
    journaled = {(e.get("case"), e.get("version")) for e in ws.journal("correction")}
    losses += sum((case, version) not in journaled for case, version, _ in reported)
    problems += [f"{case} {prov['version']}: saved but not in the journal" for case in ws.case_ids()
                 for prov in ws.versions(case)
                 if prov["source"] == "correction" and (case, prov["version"]) not in journaled]
    return losses, problems


def check_autosave(ws: Workspace, reported: list[list[str]]) -> tuple[int, list[str]]:
    path = autosave_path(ws.root / "autosave", "lnq2023-train-0000")
    if not reported:
        return 0, []
    try:
        volume = read_labels(path)
        seed = int(volume.meta["lnq_seed"])
        if not holds(volume, seed):
            return 1, [f"autosave does not hold edit {seed}, which its header names"]
    except Exception as exc:  # noqa: BLE001
        return 1, [f"autosave unreadable: {exc}"]
    return int(seed < int(reported[-1][0])), []


def check_activate(
    ws: Workspace, reported: list[list[str]], before: str, start: int,
) -> tuple[int, list[str]]:
    """Loss: the active version is neither the last reported activation nor the one in flight after it
    (``before``, the version active before the trial, counts as reported when nothing was)."""
    problems = []
    try:
        registry = json.loads(ws.registry.file.read_text())
        active = [e["id"] for e in registry["versions"] if e.get("active")]
    except Exception as exc:  # noqa: BLE001
        return 1, [f"registry unreadable: {exc}"]
    if len(active) > 1:
        problems.append(f"{len(active)} active versions")
    for version in active:
        try:
            ws.registry.check(version)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"active {version} is partial: {exc}")
    now = active[0] if active else "bundled"
    in_flight = CYCLE[(start + len(reported)) % len(CYCLE)]
    last = reported[-1][0] if reported else before
    return int(now not in (last, in_flight)) + len(problems), problems


CHECKS = {"save": check_save, "autosave": check_autosave}


def torn_journal_lines(ws: Workspace) -> int:
    """Lines of the journal that do not parse (a kill mid-append; tolerated and skipped)."""
    lines = ws.journal_path.read_text(encoding="utf-8").splitlines() if ws.journal_path.exists() else []
    torn = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            torn += 1
    return torn


def op_seconds(op: str, root: Path) -> float:
    """How long one operation takes here (so that kill delays span a few of them)."""
    start = time.perf_counter()
    if op == "save":
        save_labels(edit(0), "lnq2023-train-0000", workspace=root, edits=1, seed=0)
    elif op == "autosave":
        write_autosave(edit(0), root / "autosave", "lnq2023-train-0000", extra={"lnq_seed": 0})
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            cli_main(["workspace", "activate", str(root), "bundled"])
    return max(time.perf_counter() - start, 1e-3)


def kill_trials(op: str, trials: int, seed: int = 0) -> dict:
    """Run ``trials`` kill trials of ``op`` on one workspace; returns the counts."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="lnq-kill-") as tmp:
        ws = make_workspace(Path(tmp))
        span = 6 * min(op_seconds(op, ws.root) for _ in range(3))  # kills spread over ~6 operations
        counts = Counter(trials=0, reported=0, losses=0)
        problems: list[str] = []
        for trial in range(trials):
            start = 1000 * (trial + 1)
            before = (ws.active_model() or {}).get("id", "bundled")
            reported = run_trial(op, ws.root, rng.uniform(0.0, span), start)
            ws = Workspace.open(ws.root)
            if op == "activate":
                lost, found = check_activate(ws, reported, before, start)
            else:
                lost, found = CHECKS[op](ws, reported)
            counts["trials"] += 1
            counts["reported"] += len(reported)
            counts["losses"] += lost
            problems += found
        if op == "activate":
            for entry in ws.models():  # no registered version is half-copied
                try:
                    ws.registry.check(entry["id"])
                except Exception as exc:  # noqa: BLE001
                    counts["losses"] += 1
                    problems.append(f"registered {entry['id']} is partial: {exc}")
        counts["torn_journal_lines"] = torn_journal_lines(ws)
        counts["leftover_temp_files"] = sum(1 for p in ws.root.rglob(".*") if is_temp(p))
        counts["staging_folders"] = sum(1 for p in ws.root.rglob(".m*") if p.is_dir())  # copies cut short
        counts["temp_files_after_cleanup"] = stale_cleanup(op, ws)
        return {"op": op, **counts, "span_s": span, "problems": problems[:5]}


def stale_cleanup(op: str, ws: Workspace) -> int:
    """Age the leftover temp files of killed writes past :data:`~lnq_napari.io.atomic.STALE_SECONDS`,
    run ``op`` once more on every case it writes to; how many of them are left."""
    leftovers = [p for p in ws.root.rglob(".*") if is_temp(p)]
    for path in leftovers:
        old = time.time() - 2 * STALE_SECONDS
        os.utime(path, (old, old))
    if op == "save":
        for case in ws.case_ids():
            save_labels(edit(0), case, workspace=ws.root, edits=1, seed=0)
    else:
        op_seconds(op, ws.root)
    return sum(1 for p in leftovers if p.exists())


# ------------------------------------------------------------------ finetune: kill, then --resume
TINY = {  # a tiny network on tiny phantoms: a fine-tune of a few iterations takes seconds
    "architecture": {"kwargs": {"features": [4, 8, 16, 32]}},
    "preprocessing": {"target_spacing": [6.0, 6.0, 8.0]},
    "inference": {"patch_size": [8, 32, 32]},
    "train": {"patch_size": [8, 32, 32], "batch_size": 1, "warmup": 1},
}
FINETUNE_ITERATIONS = 8


def finetune_setup(folder: Path) -> None:
    """(In a worker process.) Phantom data, a 2-iteration parent model, a workspace with 2 corrections."""
    from lnq_napari.phantom import write_dataset
    from lnq_napari.training.trainer import load_training_cases, train_model

    data = folder / "data"
    write_dataset(data, 4, seed=5, shape=(16, 48, 48), spacing=(6.0, 6.0, 8.0))
    parent = train_model(load_training_cases(data)[:1], folder / "parent", iterations=2, device="cpu",
                         config=TINY)
    ws = Workspace.init(folder / "ws", data)
    ws.activate(ws.register_model(parent))
    for case in ws.case_ids()[:2]:
        full = read_labels(ws.full_path(case), reference=ws.read_ct(case))
        ws.add_label_version(case, full, "correction", model_version="m001", edits=3)


def _worker(*args: str) -> tuple[int, str]:
    """Run this script as a worker process; returns (exit code, last line of stderr)."""
    import subprocess

    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def finetune_trials(trials: int, seed: int = 0) -> dict:
    """Kill `lnq-napari finetune` at a random moment, then run `finetune --resume`: it must continue or say
    why not in one line (exit 2), and the registry must never list a partial model."""
    import subprocess

    rng = random.Random(seed)
    counts: Counter = Counter()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lnq-kill-finetune-") as tmp:
        code, err = _worker("finetune", tmp)
        if code:
            return {"op": "finetune", "trials": 0, "losses": 1, "problems": [f"setup failed: {err}"]}
        root = Path(tmp) / "ws"
        command = [sys.executable, "-m", "lnq_napari.cli", "finetune", "--workspace", str(root),
                   "--iterations", str(FINETUNE_ITERATIONS), "--device", "cpu"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, env=env, check=True)  # uninterrupted: how long it takes
        duration = time.perf_counter() - start
        for _ in range(trials):
            worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            time.sleep(rng.uniform(0.1, 0.8) * duration)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            counts["killed in training (pending plan)" if (root / "models" / "pending.json").exists()
                   else "killed before its plan or after its end"] += 1
            resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=env)
            lines = resumed.stderr.strip().splitlines()
            errors = [line for line in lines if line.startswith("lnq-napari: error:")]
            if resumed.returncode == 0:
                counts["resumed"] += 1
            elif resumed.returncode == 2 and len(errors) == 1:
                counts["said why not"] += 1
                counts[f"({errors[0][20:80]}...)"] += 1
            else:
                counts["losses"] += 1
                problems.append(f"resume exit {resumed.returncode}: {(lines or [''])[-1][:160]}")
            ws = Workspace.open(root)
            for entry in ws.models():
                try:
                    ws.registry.check(entry["id"])
                except Exception as exc:  # noqa: BLE001
                    counts["losses"] += 1
                    problems.append(f"registered {entry['id']} is partial: {exc}")
            counts["trials"] += 1
        counts["models registered"] = len(Workspace.open(root).models())
    return {"op": "finetune", **counts, "uninterrupted_s": duration, "problems": problems[:5]}


# ------------------------------------------------------------------ next: kill while ranking cases
NEXT_CASES = 4


def next_setup(folder: Path) -> None:
    """(In a worker process.) Phantom cases and an untrained tiny model (outputs near 0.5: uncertain
    nodes, so cached scores point at their prediction versions) registered and active in a workspace."""
    import torch

    from lnq_napari.model.checkpoint import save_checkpoint
    from lnq_napari.model.config import ModelConfig
    from lnq_napari.model.network import build_network
    from lnq_napari.phantom import write_dataset

    data = folder / "data"
    write_dataset(data, NEXT_CASES, seed=7, shape=(16, 48, 48), spacing=(6.0, 6.0, 8.0))
    torch.manual_seed(0)
    config = ModelConfig.from_dict({**TINY, "version": "tiny-next"})
    net = build_network(config.architecture.name, config.architecture.kwargs)
    save_checkpoint(folder / "tiny", net.state_dict(), config)
    ws = Workspace.init(folder / "ws", data)
    ws.activate(ws.register_model(folder / "tiny"))
    from lnq_napari.api import next_cases

    torch.set_num_threads(1)
    start = time.perf_counter()
    next_cases(ws.root, n=2)  # how long one ranking of every case takes (the kills spread over it)
    (folder / "next_seconds.txt").write_text(str(time.perf_counter() - start))


def work_next(root: Path, fd: int, start: int) -> None:
    """Rank the workspace's cases (`lnq-napari next`) once; report the ranking's model."""
    import torch

    from lnq_napari.api import next_cases

    torch.set_num_threads(1)
    rows = next_cases(root, n=2)
    _report(fd, Workspace.open(root).prediction_model()[1], len(rows))
    time.sleep(10**6)  # done: a kill from now on finds the ranking complete


WORKERS["next"] = work_next


def check_next(ws: Workspace, reported: list[list[str]], key: str) -> tuple[int, list[str], bool]:
    """(losses, problems, complete) after a kill during `next` with model ``key``: the cache parses,
    each entry names a committed prediction version of ``key``; every visible version is complete;
    one prediction version per case and model at most; a reported ranking left a journal line and a
    score for every case. ``complete``: every case has its score."""
    problems: list[str] = []
    path = ws.cache_path(f"scores-{key}.json")
    cache = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except ValueError as exc:
            return 1, [f"cache half-written: {exc}"], False
    for case, entry in cache.items():
        for node in entry.get("nodes", []):
            version = node.get("prediction_version")
            if version is None:
                continue
            try:
                info = ws.version_info(case, version)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"cache {case}: {exc}")
                continue
            if info.get("source") != "prediction" or info.get("model_version") != key:
                problems.append(f"cache {case}: {version} is not a prediction of {key}")
    for case in ws.case_ids():
        predictions = [p for p in ws.versions(case)
                       if p["source"] == "prediction" and p.get("model_version") == key]
        if len(predictions) > 1:
            problems.append(f"{case}: {len(predictions)} prediction versions of {key}")
        for prov in ws.versions(case):
            if sha256_file(ws.label_path(case, prov["version"])) != prov.get("sha256"):
                problems.append(f"{case} {prov['version']}: visible but not as committed")
    complete = set(cache) >= set(ws.case_ids())
    mine = [r for r in reported if r[0] == key]
    losses = len(problems)
    if mine and not complete:
        losses += 1
        problems.append(f"a ranking was reported but the cache of {key} lacks cases")
    logged = sum(1 for e in ws.journal("next") if e.get("model_version") == key)
    if logged < len(mine):
        losses += len(mine) - logged
        problems.append(f"{len(mine)} rankings reported, {logged} in the journal")
    return losses, problems, complete


def next_trials(trials: int, seed: int = 0) -> dict:
    """Kill `next` at random moments. A ranking cut short resumes in the next trial (same model); once
    every case is scored, a new model version is registered and activated, so each round predicts
    (and stores prediction versions) again. A last, uninterrupted `next` must then complete."""
    import torch  # imported before the forks (not used until they are over): the worker has it loaded

    torch.set_num_threads(1)
    rng = random.Random(seed)
    counts: Counter = Counter(trials=0, reported=0, losses=0, rounds=1, torn_journal_lines=0,
                              leftover_temp_files=0, prediction_versions=0)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lnq-kill-next-") as tmp:
        code, err = _worker("next", tmp)
        if code:
            return {"op": "next", **counts, "losses": 1, "span_s": 0.0, "problems": [f"setup failed: {err}"]}
        root = Path(tmp) / "ws"
        span = 1.2 * float((Path(tmp) / "next_seconds.txt").read_text())
        ws = Workspace.open(root)
        ws.activate(ws.register_model(Path(tmp) / "tiny"))
        for trial in range(trials):
            ws = Workspace.open(root)
            key = ws.prediction_model()[1]
            reported = run_trial("next", root, rng.uniform(0.0, span), 1000 * (trial + 1))
            ws = Workspace.open(root)
            lost, found, complete = check_next(ws, reported, key)
            counts["trials"] += 1
            counts["reported"] += len(reported)
            counts["losses"] += lost
            problems += found
            if complete:  # a new model: the next trial predicts every case again
                ws.activate(ws.register_model(Path(tmp) / "tiny"))
                counts["rounds"] += 1
        from lnq_napari.api import next_cases

        ws = Workspace.open(root)
        key = ws.prediction_model()[1]
        rows = next_cases(root, n=2)  # uninterrupted, after the kills: must complete
        lost, found, complete = check_next(ws, [[key, len(rows)]], key)
        if not rows or not complete:
            lost += 1
            found.append("an uninterrupted `next` after the kills did not complete")
        counts["losses"] += lost
        problems += found
        counts["torn_journal_lines"] = torn_journal_lines(ws)
        counts["leftover_temp_files"] = sum(1 for p in ws.root.rglob(".*") if ".tmp" in p.name)
        counts["prediction_versions"] = sum(
            1 for c in ws.case_ids() for p in ws.versions(c) if p["source"] == "prediction")
    return {"op": "next", **counts, "span_s": span, "problems": problems[:5]}


def fuzz_counts(examples: int, readers: list[str] | None = None) -> dict[str, Counter]:
    """Outcomes of ``examples`` generated files per reader (the generators of tests/test_io_fuzz.py)."""
    import importlib.util

    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    spec = importlib.util.spec_from_file_location(
        "test_io_fuzz", Path(__file__).resolve().parents[1] / "tests" / "test_io_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kinds = [k for k in readers if k in module.READERS] if readers else sorted(module.READERS)
    counts = {kind: module.fuzz(kind, examples) for kind in kinds}
    if not readers or "cli" in readers:
        counts["nrrd via CLI measure"] = module.fuzz("nrrd", examples, through_cli=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="kill trials per operation")
    parser.add_argument("--fuzz", type=int, default=1000, help="generated files per reader (0: none)")
    parser.add_argument("--ops", nargs="*", default=list(OPERATIONS), choices=OPERATIONS)
    parser.add_argument("--readers", nargs="*", help="fuzz only these (nrrd, mha, nifti, dicom, seg, cli)")
    parser.add_argument("--finetune-trials", type=int, default=3,
                        help="kills of `finetune`, each followed by `finetune --resume` (0: none)")
    parser.add_argument("--worker", nargs=2, metavar=("JOB", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        {"finetune": finetune_setup, "next": next_setup}[args.worker[0]](Path(args.worker[1]))
        return 0
    failed = False
    for op in args.ops if args.trials else ():
        start = time.perf_counter()
        result = next_trials(args.trials) if op == "next" else kill_trials(op, args.trials)
        print(f"kill {op:9s} trials {result['trials']:4d}  reported done {result['reported']:5d}  "
              f"losses {result['losses']}  torn journal lines {result['torn_journal_lines']}  "
              f"leftover temp files {result['leftover_temp_files']}"
              + (f" ({result['temp_files_after_cleanup']} once stale and written over)"
                 if "temp_files_after_cleanup" in result else "") + "  "
              f"(kills within {result['span_s']:.2f} s; "
              f"{time.perf_counter() - start:.0f} s)",
              flush=True)
        if result.get("staging_folders"):
            print(f"    {result['staging_folders']} staging folders of model copies cut short "
                  "(models/.mNNN.*: never listed, not removed)", flush=True)
        if op == "next":
            print(f"    {result['rounds']} rounds (a new model each), {result['prediction_versions']} "
                  "prediction versions stored", flush=True)
        for problem in result["problems"]:
            print(f"    {problem}")
        failed |= result["losses"] > 0
    if args.finetune_trials:
        start = time.perf_counter()
        result = finetune_trials(args.finetune_trials)
        extra = "  ".join(f"{k} {v}" for k, v in result.items()
                          if k not in ("op", "trials", "losses", "problems", "uninterrupted_s"))
        print(f"kill finetune  trials {result['trials']:4d}  losses {result.get('losses', 0)}  {extra}  "
              f"(a whole fine-tune {result.get('uninterrupted_s', 0):.0f} s; "
              f"{time.perf_counter() - start:.0f} s)",
              flush=True)
        for problem in result["problems"]:
            print(f"    {problem}")
        failed |= result.get("losses", 0) > 0
    if args.fuzz:
        for kind, outcomes in fuzz_counts(args.fuzz, args.readers).items():
            other = {k: v for k, v in outcomes.items() if k not in ("volume", "LNQError", "ok", "error")}
            print(f"fuzz {kind:22s} inputs {sum(outcomes.values()):5d}  "
                  + "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k not in other)
                  + f"  other exceptions {sum(other.values())}", flush=True)
            for name, count in other.items():
                print(f"    {count} x {name}")
            failed |= bool(other)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
