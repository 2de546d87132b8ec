"""Reliability figures: SIGKILL at random moments during saves, autosaves and `workspace activate`, and
hostile files fuzzed per reader. Prints trials, losses and outcome counts (target: 0 losses, 0
exceptions other than LNQError).

    python benchmarks/bench_reliability.py                # 100 kills per operation, 1,000 files per reader
    python benchmarks/bench_reliability.py --trials 10 --fuzz 0   # kills only, quick

A kill trial forks a worker (already imported, so the kill lands in the work, not in start-up) that
repeats the operation and reports each one it completed through a pipe; the parent kills it with
SIGKILL after a random delay, then checks the workspace: every reported save readable and holding
its edit, every visible version complete (size and sha256 as committed), the journal parsing with a
line for each reported save, the autosave file complete and not older than the last reported one,
the registry parsing, its active version complete and not older than the last reported activation.
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
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.readers import read_labels, write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.autosave import autosave_path, write_autosave

SHAPE = (24, 64, 64)  # big enough that a write takes a few milliseconds: kills land inside writes
GRID = dict(spacing=(0.8, 0.8, 2.0))
OPERATIONS = ("save", "autosave", "activate")


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
    """(losses, problems): reported saves unreadable or holding another edit; visible versions incomplete."""
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
        counts["leftover_temp_files"] = sum(1 for p in ws.root.rglob(".*") if ".tmp" in p.name
                                            or (p.is_dir() and p.name.startswith(".m")))
        return {"op": op, **counts, "span_s": span, "problems": problems[:5]}


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
        code, err = _worker("setup", tmp)
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
    parser.add_argument("--readers", nargs="*", help="fuzz only these (nrrd, mha, nifti, dicom, cli)")
    parser.add_argument("--finetune-trials", type=int, default=3,
                        help="kills of `finetune`, each followed by `finetune --resume` (0: none)")
    parser.add_argument("--worker", nargs=2, metavar=("JOB", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        finetune_setup(Path(args.worker[1]))
        return 0
    failed = False
    for op in args.ops if args.trials else ():
        start = time.perf_counter()
        result = kill_trials(op, args.trials)
        print(f"kill {op:9s} trials {result['trials']:4d}  reported done {result['reported']:5d}  "
              f"losses {result['losses']}  torn journal lines {result['torn_journal_lines']}  "
              f"leftover temp files {result['leftover_temp_files']}  (kills within {result['span_s']:.2f} s; "
              f"{time.perf_counter() - start:.0f} s)",
              flush=True)
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
