"""Model folders that are not what they claim are refused with a clear message, nothing is ever
unpickled, and files lnq-napari does not read are named in a warning."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import warnings

import pytest

from lnq_napari.errors import LNQError
from lnq_napari.model import bundled_model_path
from lnq_napari.model.checkpoint import CONFIG, WEIGHTS, load_checkpoint, sha256_file


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    return folder


def _edit_config(folder, **changes):
    config = json.loads((folder / CONFIG).read_text())
    for key, value in changes.items():
        if key == "kwargs":
            config["architecture"]["kwargs"].update(value)
        else:
            config[key] = value
    (folder / CONFIG).write_text(json.dumps(config))


def test_a_model_we_wrote_loads_without_warning(model):
    (model / "train_log.csv").write_text("epoch,loss\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net, config = load_checkpoint(model)
    assert config.architecture.name == "unet3d"


def test_weights_changed_after_the_config_are_refused(model):
    with open(model / WEIGHTS, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(LNQError, match="does not match the sha256"):
        load_checkpoint(model)


@pytest.mark.parametrize("digest", ["abc", 42, "z" * 64])
def test_a_malformed_recorded_hash_is_refused(model, digest):
    _edit_config(model, weights_sha256=digest)
    with pytest.raises(LNQError, match="sha256"):
        load_checkpoint(model)


def test_a_config_that_does_not_match_the_weights_is_refused(model):
    _edit_config(model, kwargs={"features": [4, 8, 16, 32]})
    with pytest.raises(LNQError, match="do not fit architecture") as info:
        load_checkpoint(model)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"features": "wide"}, {"strides": 3}, {"in_channels": "one"}])
def test_settings_of_the_wrong_kind_are_refused(model, kwargs):
    _edit_config(model, kwargs=kwargs)
    with pytest.raises(LNQError):
        load_checkpoint(model)


class _Marker:
    """Unpickling this would create a file: the proof that nothing is unpickled."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_in_place_of_the_weights_is_refused_without_unpickling(model, tmp_path):
    marker = _Marker()
    marker.path = str(tmp_path / "unpickled")
    (model / WEIGHTS).write_bytes(pickle.dumps(marker))
    _edit_config(model, weights_sha256=sha256_file(model / WEIGHTS))  # the hash even matches
    with pytest.raises(LNQError, match="not a readable safetensors"):
        load_checkpoint(model)
    assert not (tmp_path / "unpickled").exists()


def test_extra_files_are_named_in_a_warning_and_never_read(model):
    (model / "model.pt").write_bytes(b"not read")
    (model / "notes.txt").write_text("from the cluster")
    with pytest.warns(UserWarning, match="model.pt, notes.txt; only config.json and weights.safetensors"):
        load_checkpoint(model)


@pytest.mark.parametrize("change", [{"format_version": "x"}, {"format_version": None},
                                    {"preprocessing": 5}])
def test_a_format_version_or_preprocessing_of_the_wrong_kind_is_one_line(model, change):
    """They gave int()'s ValueError or TypeError tracebacks, or one at the first prediction."""
    _edit_config(model, **change)
    with pytest.raises(LNQError, match="format version|preprocessing settings"):
        load_checkpoint(model)


@pytest.mark.parametrize("version", [0, -3, "1", 1.0, True])
def test_a_format_version_below_one_or_not_a_whole_number_is_refused_as_a_workspace_s_is(model, version):
    """format_version 0 or -3 (edited by hand) loaded as a model's; the rule is now the workspace's (a
    whole number from 1 up: io.format_version), with the same one line."""
    _edit_config(model, format_version=version)
    said = (f"{model / CONFIG} has format_version {json.dumps(version)}, which is not a valid model format "
            "version (a whole number, 1 for this lnq-napari); re-copy or re-export the model, or correct the "
            "value")
    with pytest.raises(LNQError) as caught:
        load_checkpoint(model)
    assert str(caught.value) == said


def test_a_newer_format_version_is_named_as_the_invalid_one_is(model):
    """The config said "format_version" of a bad value but "format version" of a newer one: one wording."""
    _edit_config(model, format_version=2)
    with pytest.raises(LNQError) as caught:
        load_checkpoint(model)
    assert str(caught.value) == (f"{model / CONFIG} has format_version 2, newer than this lnq-napari reads "
                                 "(1); upgrade lnq-napari (pip install -U lnq-napari)")


def test_a_config_without_a_format_version_still_loads(model):
    config = json.loads((model / CONFIG).read_text())
    del config["format_version"]
    (model / CONFIG).write_text(json.dumps(config))
    load_checkpoint(model)


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
from lnq_napari.model.checkpoint import load_checkpoint, save_checkpoint
net, config = load_checkpoint(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    save_checkpoint(Path(sys.argv[2]), net.state_dict(), config)
except OSError as exc:
    print("OSError", exc.errno)
except Exception as exc:
    print(type(exc).__name__)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_weights_that_do_not_fit_on_the_disk_are_an_os_error(model, tmp_path):
    """A full disk during a fine-tune gave safetensors' own error and a traceback from the command line
    (it turns an OSError into one line saying to free space); nothing is left half-written."""
    import errno
    import subprocess

    out = tmp_path / "saved"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(model), str(out)], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["OSError", str(errno.EFBIG)]
    assert [p.name for p in out.iterdir()] == []  # no temporary file, no weights
