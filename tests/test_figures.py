"""Pictures of a case show axial slices as radiologists read them, whatever order the file stores."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.figures import overlay_figure
from lnq_napari.io.orientation import radiological
from lnq_napari.io.volume import Volume


def _case():
    """A CT with a bright spot anterior-right (low y, low x in LPS) and a node mask on it."""
    hu = np.full((6, 40, 50), -100, np.int16)
    hu[:, 5:12, 5:15] = 300  # anterior (top) and on the patient's right (image left)
    mask = np.zeros(hu.shape, np.uint8)
    mask[2:4, 20:26, 30:36] = 1
    return Volume(hu, spacing=(0.8, 0.7, 3.0), origin=(-20.0, 10.0, 5.0)), mask


def _flipped(ct: Volume, mask: np.ndarray):
    """The same voxels in space stored with x and y reversed (direction -1, -1, as CTChest4)."""
    direction = np.diag([-1.0, -1.0, 1.0])
    far = ct.index_to_physical(np.array([[0, ct.shape[1] - 1, ct.shape[2] - 1]]))[0]
    stored = Volume(np.ascontiguousarray(ct.array[:, ::-1, ::-1]), spacing=ct.spacing, origin=tuple(far),
                    direction=tuple(direction.ravel()))
    return stored, stored.with_array(np.ascontiguousarray(mask[:, ::-1, ::-1]))


def test_radiological_gives_the_lps_array_of_a_flipped_file():
    ct, mask = _case()
    stored, _ = _flipped(ct, mask)
    shown = radiological(stored)
    np.testing.assert_array_equal(shown.array, ct.array)
    assert shown.origin == pytest.approx(ct.origin) and shown.spacing == pytest.approx(ct.spacing)


def test_the_overlay_of_a_flipped_file_is_the_same_picture(tmp_path):
    """CTChest4 (directions -1, -1) was drawn upside down and mirrored: spine at the top."""
    import matplotlib.image

    ct, mask = _case()
    stored, stored_mask = _flipped(ct, mask)
    want = overlay_figure(ct, ct.with_array(mask), tmp_path / "lps.png", slices=[3])
    got = overlay_figure(stored, stored_mask, tmp_path / "flipped.png", slices=[3])
    np.testing.assert_array_equal(matplotlib.image.imread(got), matplotlib.image.imread(want))


def test_a_home_that_cannot_be_written_prints_nothing_of_matplotlib_s(tmp_path):
    """`demo` where HOME is read-only: matplotlib printed three lines of its own about its config folder."""
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    home.write_text("not a folder")  # ~/.config cannot be made (as a read-only HOME, even for root)
    own = ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in own}
    script = ("import numpy as np\nfrom lnq_napari.figures import overlay_figure\n"
              "from lnq_napari.io.volume import Volume\n"
              "v = Volume(np.zeros((4, 8, 8), np.int16), (1.0, 1.0, 1.0))\n"
              "m = v.with_array(np.zeros((4, 8, 8), np.uint8))\n"
              f"overlay_figure(v, m, {str(tmp_path / 'o.png')!r})\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**env, "HOME": str(home)})
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert (tmp_path / "o.png").is_file()


def test_no_home_folder_at_all_gives_matplotlib_a_temporary_one(monkeypatch):
    """HOME unset and a uid without a passwd entry (`env -i`, a container's arbitrary uid): Path.home()
    raised RuntimeError, and `demo` stopped with a traceback after predicting."""
    import os
    import pwd
    import sys

    from lnq_napari.figures import _matplotlib_home

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)  # as before matplotlib's first import
    _matplotlib_home()
    folder = os.environ["MPLCONFIGDIR"]
    assert os.path.isdir(folder) and os.access(folder, os.W_OK)


def _before_matplotlib(monkeypatch, **env):
    """As before matplotlib's first import, with only ``env`` of the variables that choose its folders."""
    import os
    import sys

    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    return os.environ


def test_a_cache_folder_that_cannot_be_written_gives_matplotlib_a_temporary_one(tmp_path, monkeypatch):
    """~/.config writable but ~/.cache not: only the settings folder was checked, and matplotlib still
    printed its lines about its cache folder."""
    from lnq_napari.figures import _matplotlib_home

    (tmp_path / "cache").write_text("not a folder")
    env = _before_matplotlib(monkeypatch, HOME=tmp_path, XDG_CACHE_HOME=tmp_path / "cache")
    _matplotlib_home()
    assert "MPLCONFIGDIR" in env


def test_on_other_systems_matplotlib_chooses_its_folders_itself(tmp_path, monkeypatch):
    """On macOS (``~/.matplotlib``) and Windows (``%LOCALAPPDATA%``) the Linux folder was made in the
    user's home (a stray ~/.config/matplotlib) and checked in place of matplotlib's own."""
    import sys

    from lnq_napari.figures import _matplotlib_home

    env = _before_matplotlib(monkeypatch, HOME=tmp_path / "file")
    (tmp_path / "file").write_text("a home that cannot be written")
    for system in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", system)
        _matplotlib_home()
        assert "MPLCONFIGDIR" not in env
    monkeypatch.setattr(sys, "platform", "linux")
    _matplotlib_home()
    assert "MPLCONFIGDIR" in env
