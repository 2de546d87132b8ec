"""Worker processes end with the program that started them (a kill -9 left export workers writing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = '''
import os, time
from lnq_napari.processes import process_pool

def worker_pid(_):
    return os.getpid()

def busy(_):
    time.sleep(120)

if __name__ == "__main__":
    pool = process_pool(1)
    print(pool.submit(worker_pid, 0).result(), flush=True)
    pool.submit(busy, 0)
    time.sleep(120)
'''


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_worker_ends_soon_after_its_program_is_killed(tmp_path):
    script = tmp_path / "starts_a_pool.py"
    script.write_text(SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _running(worker)
        os.kill(parent.pid, signal.SIGKILL)  # no chance to shut its pool down
        parent.wait(30)
        deadline = time.time() + 20
        while _running(worker) and time.time() < deadline:
            time.sleep(0.2)
        assert not _running(worker)
    finally:
        parent.kill()
