"""How long does a fine-tune round take? A kept loop's last fine-tune replayed, alternating two checkouts.

``bench_adaptation.py`` runs several loops on the CPU at once, so its per-round seconds say little about
one user's round. This copies a loop's workspace (``--workspace``, e.g.
``results/adaptation-s23/work/nodes-s1-...``), puts it back as it was before its last fine-tune (that
version and its registry entry removed, the version active before it active again, the cached figures
of models other than the remaining versions and the bundled one dropped: the parent's are kept, as the
loop left them), and runs
``lnq-napari finetune`` on the copy, ``--repeats`` times, alternating with the same replay on
``--against`` (a git commit, checked out in a worktree) when given, so both meet the same machine.
It prints each run's wall seconds, the journal's seconds and training seconds, the registered weights'
sha256 and the verdict's first words, then the medians and their ratio. Same data and seed: the verdicts
should agree (and the weights, for a change that computes the same things faster). Give a workspace
a loop ran with the code being timed: the figures it cached in earlier rounds are read as they would be
in the loop's own last round (a loop of older code cached none, or under other keys).

    OMP_NUM_THREADS=2 python benchmarks/bench_finetune_time.py --against bc1026c --repeats 2 \\
        --workspace "benchmarks/results/adaptation-s24b/work/nodes-s1-uncertainty-clicks-mine_negatives=true"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHES = ("held_out.json", "forgetting.json")  # figures keyed by model first


def last_finetune(root: Path) -> tuple[dict, str]:
    """The journal's last fine-tune entry and the version active before it (``bundled`` for none)."""
    entries = [json.loads(line) for line in (root / "journal.jsonl").read_text().splitlines() if line]
    tunes = [k for k, e in enumerate(entries) if e["action"] == "finetune"]
    if not tunes:
        raise SystemExit(f"{root} holds no fine-tune to replay; give a loop's workspace")
    last = tunes[-1]
    registered = next(k for k in range(last, -1, -1) if entries[k]["action"] == "register_model")
    before = [e for e in entries[:registered] if e["action"] == "activate"]
    return entries[last], before[-1]["version"] if before else "bundled"


def rolled_back(source: Path, into: Path) -> Path:
    """A copy of the workspace ``source`` as it was before its last fine-tune: that version gone, the one
    active before it active, and the cached figures of any model but the remaining versions and the bundled
    one dropped (the last fine-tune's candidate and its steps among them: a replay trains the same weights
    and would read them)."""
    tune, active = last_finetune(source)
    version = tune["new_version"]
    shutil.copytree(source, into)
    registry = into / "models" / "registry.json"
    data = json.loads(registry.read_text())
    entry = next(e for e in data["versions"] if e["id"] == version)
    data["versions"] = [e for e in data["versions"] if e["id"] != version]
    for e in data["versions"]:
        e["active"] = e["id"] == active
    registry.write_text(json.dumps(data, indent=1))
    shutil.rmtree(into / entry["path"])
    kept = model_keys([into / e["path"] for e in data["versions"]])
    for name in CACHES:
        path = into / "cache" / name
        if path.is_file():
            entries = json.loads(path.read_text())
            path.write_text(json.dumps({k: v for k, v in entries.items() if k.split("|")[0] in kept}))
    return into


def model_keys(folders: list[Path]) -> set[str]:
    """The figures keys of model folders and of the bundled model (by today's code: an older checkout
    keys its check figures the same way and keeps no held-out figures)."""
    from lnq_napari.model import resolve_model
    from lnq_napari.model.checkpoint import figures_key

    keys = {figures_key(f) for f in [*folders, Path(resolve_model(None))]}
    return {k for k in keys if k}


def checkout(commit: str, into: Path) -> Path:
    """A worktree of ``commit`` at ``into``."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), commit], check=True,
                   capture_output=True)
    return into


def replay(code: Path, workspace: Path, settings: list[str], threads: int) -> dict:
    """One fine-tune of the rolled-back ``workspace`` with the lnq_napari of ``code``; its figures."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "lnq_napari.cli", "finetune", "--workspace", str(workspace),
           "--device", "cpu"]
    for s in settings:
        cmd += ["--set", s]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fine-tune failed with {code}: {done.stderr.strip().splitlines()[-1:]}")
    tune, _ = last_finetune(workspace)
    registry = json.loads((workspace / "models" / "registry.json").read_text())
    entry = next(e for e in registry["versions"] if e["id"] == tune["new_version"])
    weights = json.loads((workspace / entry["path"] / "config.json").read_text())["weights_sha256"]
    return {"wall": wall, "seconds": tune["seconds"], "train": tune["train_seconds"],
            "verdict": tune["reason"].split(":")[0][:70], "weights": weights[:12]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", required=True, help="a loop's workspace folder (bench_adaptation's work/)")
    p.add_argument("--against", default=None, help="a git commit to time the same replay with")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a fine-tune setting")
    args = p.parse_args(argv)
    source = Path(args.workspace)
    if not (source / "journal.jsonl").is_file():
        raise SystemExit(f"{source} is not a workspace; give a loop's workspace folder")
    with tempfile.TemporaryDirectory(prefix="lnq-ft-time-") as tmp:
        codes = {"HEAD": REPO}
        if args.against:
            codes[args.against] = checkout(args.against, Path(tmp) / "against")
        runs: dict[str, list[dict]] = {name: [] for name in codes}
        try:
            for k in range(args.repeats):
                for name, code in codes.items():
                    ws = rolled_back(source, Path(tmp) / f"ws-{len(runs[name])}-{k}-{name[:8]}")
                    got = replay(code, ws, args.set, args.threads)
                    runs[name].append(got)
                    print(f"{name} run {k + 1}: wall {got['wall']:.0f} s, journal {got['seconds']:.0f} s, "
                          f"training {got['train']:.0f} s, weights {got['weights']}; {got['verdict']}",
                          flush=True)
                    shutil.rmtree(ws)
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(Path(tmp) / "against")], capture_output=True)
        medians = {name: statistics.median(r["wall"] for r in got) for name, got in runs.items()}
        for name, m in medians.items():
            print(f"{name}: median wall {m:.0f} s over {len(runs[name])} runs")
        if args.against:
            print(f"HEAD / {args.against}: {medians['HEAD'] / medians[args.against]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
