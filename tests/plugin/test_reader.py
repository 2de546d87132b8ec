"""The npe2 reader's choices on real files (no viewer needed): CT -> image, label maps -> labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lnq_napari.plugin._reader import napari_get_reader, read_layers

DATA = Path(__file__).parents[1] / "data"


def _read(path):
    reader = napari_get_reader(str(path))
    assert reader is not None, path
    return reader(str(path))


def test_dicom_folder_opens_as_ct_image():
    ((data, kwargs, kind),) = _read(DATA / "dcmqi" / "ct-3slice")
    assert kind == "image" and data.shape[0] == 3 and data.min() < 0
    assert kwargs["scale"][1] == pytest.approx(kwargs["scale"][2]) and kwargs["contrast_limits"] == (
        -160.0,
        240.0,
    )
    assert kwargs["metadata"]["lnq_role"] == "ct"


def test_a_dicom_folder_of_files_named_by_their_uids_opens(tmp_path):
    """Files named by their SOP Instance UIDs (``1.2.840...5``: a suffix of digits, as many exports and
    PACS name them) made no DICOM folder: napari's File > Open found no reader for it."""
    import pydicom

    folder = tmp_path / "series"
    folder.mkdir()
    for file in sorted((DATA / "dcmqi" / "ct-3slice").glob("*.dcm")):
        (folder / str(pydicom.dcmread(file, stop_before_pixels=True).SOPInstanceUID)).write_bytes(
            file.read_bytes())
    ((data, kwargs, kind),) = _read(folder)
    assert kind == "image" and data.shape[0] == 3 and kwargs["metadata"]["lnq_role"] == "ct"


def _bare_series(folder: Path) -> Path:
    """The 3-slice series written as older exports write it: bare implicit-VR datasets, no 128-byte
    preamble, no 'DICM', no suffix."""
    import pydicom

    folder.mkdir(parents=True)
    for k, file in enumerate(sorted((DATA / "dcmqi" / "ct-3slice").glob("*.dcm"))):
        ds = pydicom.dcmread(file)
        ds.preamble = None
        del ds.file_meta
        pydicom.dcmwrite(folder / f"{k + 1:05d}", ds, implicit_vr=True, little_endian=True,
                         enforce_file_format=False)
    return folder


def test_a_folder_is_a_dicom_folder_for_file_open_as_for_the_cli(tmp_path):
    """The plugin had its own rule for a DICOM folder: slices written without the preamble and a suffix
    (older exports) made none for File > Open, while the CLI took the folder for its series; a README
    alone made one. One rule now (:func:`.dicom_tree.is_dicom_folder`). File > Open and ``view --ct`` read
    the series (GDCM reads files without the preamble; they were refused as unreadable). CT files beside
    DICOM are what the folder holds, for File > Open as for the command line (it takes them and leaves the
    DICOM out)."""
    import shutil

    from lnq_napari.errors import LNQError
    from lnq_napari.io import read_volume

    folder = _bare_series(tmp_path / "series")
    assert napari_get_reader(str(folder)) is read_layers
    ((data, _, kind),) = read_layers(str(folder))
    assert kind == "image"
    np.testing.assert_array_equal(data, read_volume(DATA / "dcmqi" / "ct-3slice").array)
    np.testing.assert_array_equal(read_volume(folder).array, data)
    shutil.copy(DATA / "pynrrd" / "BallBinary30x30x30.nrrd", folder / "scan.nrrd")
    with pytest.raises(LNQError, match=r"series is a folder of 1 CT file \(scan\.nrrd\): open one CT file"):
        napari_get_reader(str(folder))(str(folder))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README").write_text("LNQ cases\n")
    assert napari_get_reader(str(tmp_path / "notes")) is None  # no DICOM: not ours, as an empty folder


def test_a_folder_of_ct_files_beside_dicom_is_its_ct_files(tmp_path):
    """A folder of LNQ cases with DICOM slices or a DICOM series folder beside them: the command line
    takes the CT files and leaves the DICOM out, File > Open opened the DICOM (or said to give the folder
    to predict, which would read the CT files): now it says what the folder holds, as without the DICOM."""
    import shutil

    from lnq_napari.errors import LNQError

    for k in range(3):
        shutil.copy(DATA / "pynrrd" / "BallBinary30x30x30.nrrd", tmp_path / f"lnq2023-train-000{k}-ct.nrrd")
    shutil.copytree(DATA / "dcmqi" / "ct-3slice", tmp_path / "dicom" / "series")
    for k, file in enumerate(sorted((DATA / "dcmqi" / "ct-3slice").glob("*.dcm"))):
        shutil.copy(file, tmp_path / f"zz{k}.dcm")
    with pytest.raises(LNQError, match=r"is a folder of 3 CT files \(lnq2023-train-0000-ct\.nrrd, \.\.\.\): "
                                       r"open one CT file"):
        napari_get_reader(str(tmp_path))(str(tmp_path))


@pytest.mark.parametrize(("notes", "by_uid"), [
    (["1_README.txt", "2_info.json", "3_meta.xml", "4_thumb.jpg"], False),  # notes before IM0001.dcm ...
    (["0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg", "0005.png"], True),  # thumbnails before 1.2.840...
])
def test_a_series_folder_with_notes_or_thumbnails_sorted_first_opens(tmp_path, notes, by_uid):
    """The DICOM folder rule looked at the first 4 files only: a series folder whose notes or thumbnails
    sort before its slices was no DICOM folder for File > Open (``view --ct`` read it), nor for the walk
    of a tree (``predict`` found no CT). Files named as no DICOM is are not counted."""
    import pydicom

    folder = tmp_path / "series"
    folder.mkdir()
    for k, file in enumerate(sorted((DATA / "dcmqi" / "ct-3slice").glob("*.dcm"))):
        uid = str(pydicom.dcmread(file, stop_before_pixels=True).SOPInstanceUID)
        (folder / (uid if by_uid else f"IM{k + 1:04d}.dcm")).write_bytes(file.read_bytes())
    assert sorted(p.name for p in folder.iterdir())[0] > notes[-1]  # the notes sort first
    for name in notes:
        (folder / name).write_bytes(b"\xff\xd8\xff\xe0 not DICOM")
    ((data, kwargs, kind),) = _read(folder)
    assert kind == "image" and data.shape[0] == 3 and kwargs["metadata"]["lnq_role"] == "ct"


def test_a_cd_copied_without_its_dicomdir_and_a_tcia_download_open_as_their_series(tmp_path):
    """A folder holding no DICOM but a series folder below it (a CD copied without its DICOMDIR, beside
    its README.TXT; a TCIA download's patient / study / series) was no DICOM folder for File > Open, while
    ``view --ct`` read the series below, as both do for a CD's root. Several series below: one line
    saying so."""
    import shutil

    from lnq_napari.errors import LNQError

    cd = tmp_path / "CD"
    shutil.copytree(DATA / "dcmqi" / "ct-3slice", cd / "DICOM" / "PT0" / "ST0" / "SE0")
    (cd / "README.TXT").write_text("Viewer on this CD: run viewer.exe\n")
    (cd / "VERSION.txt").write_text("1.0\n")
    tcia = tmp_path / "download"
    shutil.copytree(DATA / "dcmqi" / "ct-3slice", tcia / "LNQ-001" / "1-study" / "2-CT")
    for root in (cd, tcia):
        ((data, kwargs, kind),) = _read(root)
        assert kind == "image" and data.shape[0] == 3 and kwargs["metadata"]["lnq_role"] == "ct"
    shutil.copytree(DATA / "dcmqi" / "ct-3slice", tcia / "LNQ-002" / "1-study" / "2-CT")
    with pytest.raises(LNQError, match=r"download holds 2 DICOM CT series in the folders below it .*point to "
                                       r"one series folder, or give the folder to lnq-napari predict"):
        _read(tcia)


def test_label_files_open_as_labels_by_name_or_content():
    ((heart, _, kind),) = _read(DATA / "dcmqi" / "heart_seg.nrrd")  # name says seg
    assert kind == "labels" and heart.max() >= 1
    ((ball, kwargs, kind),) = _read(DATA / "pynrrd" / "BallBinary30x30x30.nrrd")  # 0/1 content
    assert kind == "labels" and ball.max() == 1 and kwargs["metadata"]["lnq_role"] == "labels"
    ((nhdr, _, kind),) = _read(DATA / "pynrrd" / "BallBinary30x30x30.nhdr")
    assert kind == "labels" and np.array_equal(nhdr > 0, ball > 0)


def test_slicer_segmentation_and_real_ct():
    slicerio = pytest.importorskip("slicerio")
    ((seg, _, kind),) = _read(slicerio.get_testdata_file("Segmentation.seg.nrrd"))
    assert kind == "labels" and seg.max() >= 1
    ((ct, kwargs, kind),) = _read(slicerio.get_testdata_file("CTChest4.nrrd"))
    assert kind == "image" and ct.min() < -500 and kwargs["colormap"] == "gray"


def test_unsupported_paths_are_declined(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path / "empty")) is None


def test_several_files_give_images_first():
    layers = read_layers(
        [str(DATA / "pynrrd" / "BallBinary30x30x30.nrrd"), str(DATA / "dcmqi" / "ct-3slice")]
    )
    assert [kind for _, _, kind in layers] == ["image", "labels"]


def test_seg_on_a_shifted_grid_is_put_on_the_sibling_ct_grid(tmp_path):
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    ct = Volume(np.full((6, 20, 20), 40, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    seg_array = np.zeros((4, 20, 20), np.uint8)
    seg_array[1:3, 5:10, 5:10] = 1
    seg = Volume(seg_array, (1.0, 1.0, 2.0), (0.0, 0.0, 4.0))  # two slices fewer, starting 2 slices up
    write_volume(tmp_path / "case-0001-ct.nrrd", ct)
    write_volume(tmp_path / "case-0001-seg.nrrd", seg)
    ((data, kwargs, kind),) = _read(tmp_path / "case-0001-seg.nrrd")  # a box of the CT's grid: pasted
    assert kind == "labels" and data.shape == ct.shape
    assert kwargs["translate"] == pytest.approx((0.0, 0.0, 0.0))
    assert np.array_equal(np.argwhere(data > 0)[:, 0], np.argwhere(seg_array > 0)[:, 0] + 2)


def test_a_seg_beside_a_ct_in_cm_opens_on_the_ct_s_grid(tmp_path):
    """NRRD headers in cm are read in mm; the sibling CT's grid was read by SimpleITK, which ignores the
    unit, and the labels (in mm) were refused as not overlapping it (a review)."""
    import nrrd

    array = np.zeros((4, 8, 8), np.uint8)
    array[1:3, 2:6, 2:6] = 1
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.07, 0.07, 0.25]),
              "space origin": np.array([1.0, 2.0, 3.0]), "space units": ["cm"] * 3}
    nrrd.write(str(tmp_path / "c1-ct.nrrd"), (array.astype(np.int16) * 50 - 20).transpose(2, 1, 0), header)
    nrrd.write(str(tmp_path / "c1-seg.nrrd"), array.transpose(2, 1, 0), header)
    ((data, kwargs, kind),) = _read(tmp_path / "c1-seg.nrrd")
    assert kind == "labels" and np.array_equal(np.asarray(data) > 0, array > 0)
    assert kwargs["scale"] == pytest.approx((2.5, 0.7, 0.7))


def _dicom_study(tmp_path) -> Path:
    """The dcmqi CT series and the SEG dcmqi wrote from it, laid out as a TCIA study folder."""
    import shutil

    study = tmp_path / "study"
    shutil.copytree(DATA / "dcmqi" / "ct-3slice", study / "ct")
    (study / "seg").mkdir()
    shutil.copy(DATA / "dicom-seg" / "liver_spine_dcmqi.dcm", study / "seg" / "liver_spine.dcm")
    return study


def test_a_dicom_seg_file_opens_as_labels_on_its_ct_grid(tmp_path):
    study = _dicom_study(tmp_path)
    ((ct, _, _),) = _read(study / "ct")
    ((seg, kwargs, kind),) = _read(study / "seg" / "liver_spine.dcm")
    assert kind == "labels" and seg.shape == ct.shape and seg.max() >= 1
    assert kwargs["metadata"]["lnq_role"] == "labels"


@pytest.mark.gui
def test_save_beside_a_dicom_ct_also_writes_a_dicom_seg(make_napari_viewer, tmp_path, autosave_dir,
                                                         save_and_wait):
    from lnq_napari.io.readers import read_labels, read_volume
    from lnq_napari.plugin.widgets import SaveWidget

    study = _dicom_study(tmp_path)
    viewer = make_napari_viewer()
    (ct,) = viewer.open(str(study / "ct"), plugin="lnq-napari")
    mask = np.zeros(ct.data.shape, np.uint8)
    mask[1, 10:20, 10:20] = 1
    viewer.add_labels(mask, name="nodes", scale=ct.scale, translate=ct.translate)
    save = SaveWidget(viewer)
    save.folder.setText(str(tmp_path / "labels"))
    saved = save_and_wait(save)
    assert saved is not None and "DICOM SEG" in save.status.text()
    (seg,) = saved.parent.glob("*.seg.dcm")
    back = read_labels(seg, reference=read_volume(study / "ct"))  # references that series, on its grid
    assert back.array.shape == mask.shape and np.array_equal(np.asarray(back.array) > 0, mask > 0)


def test_touching_node_segments_open_as_two_labels(tmp_path):
    """Two touching 'lymph node' segments of a Slicer file: two ids in the layer (the Nodes table then
    lists two nodes, as `measure` does); the union made them one."""
    slicerio = pytest.importorskip("slicerio")
    shape_ijk = (30, 20, 5)
    segmentation = slicerio.create_segmentation(shape_ijk, np.diag([0.8, 0.8, 3.0, 1.0]))
    left, right = np.zeros(shape_ijk, bool), np.zeros(shape_ijk, bool)
    left[2:15, 5:15, 1:4], right[15:28, 5:15, 1:4] = True, True
    for name, mask in (("lymph node 1", left), ("lymph node 2", right)):
        slicerio.add_segment(segmentation, mask, {"name": name})
    path = tmp_path / "pair.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)
    ((labels, _, kind),) = _read(path)
    assert kind == "labels" and sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert [int((labels == k).sum()) for k in (1, 2)] == [int(left.sum()), int(right.sum())]


def test_a_dicomdir_and_an_enhanced_ct_file_open_as_ct(tmp_path, enhanced_ct, cd_export):
    """File > Open (and a drop) of a CD's DICOMDIR or of an enhanced CT's one file: the reader declined
    both ("refused the file"); they open as the CT, named by the CD and by the file without .dcm."""
    ((classic, _, _),) = _read(DATA / "dcmqi" / "ct-3slice")
    ((cd, kwargs, kind),) = _read(cd_export(tmp_path / "CD1") / "DICOMDIR")
    assert kind == "image" and np.array_equal(cd, classic) and kwargs["name"] == "CD1"
    assert Path(kwargs["metadata"]["lnq_source"]) == tmp_path / "CD1"  # saved beside the CD, not into it
    enhanced = enhanced_ct(tmp_path / "enhanced", order=[2, 0, 1]) / "IM0000.dcm"
    ((frames, kwargs, kind),) = _read(enhanced)
    assert kind == "image" and np.array_equal(frames, classic) and kwargs["name"] == "IM0000"


@pytest.mark.gui
def test_save_on_a_cd_writes_a_dicom_seg_that_opens_again(make_napari_viewer, tmp_path, autosave_dir,
                                                          monkeypatch, cd_export, save_and_wait):
    """A CT opened from a CD: Save wrote no DICOM SEG ("CD1 holds no DICOM CT slices"), and a SEG Save
    wrote beside a series could not be opened again (its CT is not beside it in lnq-labels/; the version
    kept the CT's path as typed, relative to where napari was started)."""
    import json

    from lnq_napari.plugin.widgets import SaveWidget

    cd_export(tmp_path / "CD1")
    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer()
    (ct,) = viewer.open("CD1/DICOMDIR", plugin="lnq-napari")
    mask = np.zeros(ct.data.shape, np.uint8)
    mask[1, 10:20, 10:20] = 1
    viewer.add_labels(mask, name="nodes", scale=ct.scale, translate=ct.translate)
    save = SaveWidget(viewer)
    saved = save_and_wait(save)
    assert saved is not None and "DICOM SEG" in save.status.text(), save.status.text()
    assert saved.parent.resolve() == (tmp_path / "lnq-labels" / "CD1").resolve()
    assert Path(json.loads(saved.with_name("v001.json").read_text())["origin"]).is_absolute()
    (seg,) = [p.resolve() for p in saved.parent.glob("*.seg.dcm")]
    monkeypatch.chdir(tmp_path / "lnq-labels")  # opened again from elsewhere
    ((back, kwargs, kind),) = _read(seg)
    assert kind == "labels" and np.array_equal(back > 0, mask > 0)


def test_the_slices_of_a_series_open_as_one_ct_named_by_its_folder():
    """napari opens each dropped file: every slice of a series read the whole series into a layer of its
    own, named (and so saved) after the slice clicked."""
    series = DATA / "dcmqi" / "ct-3slice"
    files = [str(f) for f in sorted(series.glob("*.dcm"))]
    layers = napari_get_reader(files)(files)
    assert len(layers) == 1 and layers[0][0].shape[0] == 3
    assert layers[0][1]["name"] == "ct-3slice" and Path(layers[0][1]["metadata"]["lnq_source"]) == series
    ((one, kwargs, _),) = _read(files[1])
    assert np.array_equal(one, layers[0][0]) and kwargs["name"] == "ct-3slice"


def test_a_labels_layer_numbers_nodes_as_the_table_does_whichever_way_the_file_stores_them():
    """A Labels layer's ids are the node table's: numbered in LPS order, so the same mask stored right to
    left gives each node the same id; the layer's array is its own (C-ordered, not the volume's)."""
    import SimpleITK as sitk

    from lnq_napari.io.volume import Volume
    from lnq_napari.plugin._reader import labels_layer_data

    mask = np.zeros((6, 20, 20), np.int32)
    mask[1:3, 2:5, 14:18] = 1
    mask[3:5, 12:16, 2:5] = 1
    mask[2:4, 8:10, 8:10] = 1
    volume = Volume(mask, (0.7, 0.8, 2.5), (-10.0, 20.0, -300.0))
    stored = Volume.from_sitk(sitk.DICOMOrient(volume.to_sitk(), "RAI"))
    ids, _, _ = labels_layer_data(volume)
    again, _, _ = labels_layer_data(stored)
    back = Volume.from_sitk(sitk.DICOMOrient(stored.with_array(again).to_sitk(), "LPS"))
    np.testing.assert_array_equal(back.array, ids)
    assert again.flags.c_contiguous and not np.shares_memory(again, stored.array)


@pytest.mark.gui
def test_a_mask_stored_as_float_opens_as_labels_beside_its_ct(make_napari_viewer, tmp_path):
    """A 0/1 mask written as float32 (MONAI's default) with a plain name opened as a second CT: an Image in
    the mediastinal window that the Segment tab then chose as the CT (the layer opened last)."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume
    from lnq_napari.plugin.app import dock_widgets

    shape = (6, 16, 16)
    hu = np.random.default_rng(0).integers(-1000, 400, shape).astype(np.float32)  # a float CT stays a CT
    mask = np.zeros(shape, dtype=np.float32)
    mask[2:4, 5:9, 5:9] = 1.0
    ct_path = write_volume(tmp_path / "patient1.nii.gz", Volume(hu, (0.7, 0.7, 5.0)))
    mask_path = write_volume(tmp_path / "patient1_nodes_v2.nii.gz", Volume(mask, (0.7, 0.7, 5.0)))
    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    ct, labels = viewer.open([ct_path, mask_path], plugin="lnq-napari")
    assert (ct._type_string, labels._type_string) == ("image", "labels")
    assert segment.form.ct.value is ct
    assert int(np.count_nonzero(labels.data)) == 32


def _feet_first_ct_and_head_first_labels(tmp_path: Path) -> tuple[Path, Path]:
    """A feet-first CT (6 slices of 5 mm, z decreasing) and labels of its very points stored head first: a
    3 x 3 node on the labels' index 1 (z = 5 mm), the CT's index 4."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    shape, spacing = (6, 16, 16), (0.7, 0.7, 5.0)
    hu = np.random.default_rng(0).integers(-1000, 400, shape).astype(np.int16)
    feet_first = Volume(hu, spacing, (0.0, 0.0, 25.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1, 4:7, 4:7] = 1
    ct_path = write_volume(tmp_path / "patient1.nrrd", feet_first)
    return ct_path, write_volume(tmp_path / "from_other_tool-seg.nrrd", Volume(mask, spacing))


@pytest.mark.gui
def test_labels_stored_head_first_open_on_the_feet_first_ct_they_belong_to(make_napari_viewer, tmp_path):
    """Labels that sample a feet-first CT's very points stored head first (another tool's copy) opened
    after the CT beside it on their own grid: no CT "lay on their grid", so Shift+click said to open them
    with their CT (as had been done) and Save filed them under the labels' name, not the CT's case."""
    from lnq_napari.plugin._layers import same_placement
    from lnq_napari.plugin._session import session_for

    ct_path, labels_path = _feet_first_ct_and_head_first_labels(tmp_path)
    viewer = make_napari_viewer()
    (ct,) = viewer.open(ct_path, plugin="lnq-napari")
    (labels,) = viewer.open(labels_path, plugin="lnq-napari")
    assert same_placement(ct, labels)
    assert session_for(viewer, labels).ct_layer is ct
    painted = np.argwhere(np.asarray(labels.data) > 0)
    assert len(painted) == 9 and set(painted[:, 0]) == {4}
    assert np.isclose(labels.data_to_world(painted[0])[0], 5.0)


@pytest.mark.gui
def test_float_scans_with_sparse_fractions_or_few_large_whole_values_open_as_images(make_napari_viewer,
                                                                                    tmp_path):
    """A float map zero on the sampled slices (fractions only in between) failed File > Open with 'looks
    like a probability map'; a float phantom in HU + 1024 (three whole values) opened as one binary node."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    shape = (40, 16, 16)
    sparse = np.zeros(shape, dtype=np.float32)
    sparse[11:14, 4:9, 4:9] = np.random.default_rng(0).uniform(0.3, 0.99, (3, 5, 5))
    phantom = np.full(shape, 24.0, dtype=np.float32)
    phantom[5:35, 3:13, 3:13] = 1064.0
    phantom[15:25, 6:10, 6:10] = 1324.0
    viewer = make_napari_viewer()
    for name, array in (("map", sparse), ("phantom", phantom)):
        path = write_volume(tmp_path / f"{name}.nrrd", Volume(array))
        (layer,) = viewer.open(path, plugin="lnq-napari")
        assert layer._type_string == "image"
        np.testing.assert_array_equal(np.asarray(layer.data), array)


@pytest.mark.gui
def test_head_first_labels_find_their_ct_among_two_cases_and_in_a_viewer_not_current(make_napari_viewer,
                                                                                      tmp_path):
    """Head-first labels of a feet-first CT stayed on their own grid, unpaired, when a second case's CT
    was open too, or when another viewer made later was napari's current one."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume
    from lnq_napari.plugin._layers import same_placement

    ct_path, labels_path = _feet_first_ct_and_head_first_labels(tmp_path)
    hu = np.random.default_rng(0).integers(-1000, 400, (6, 16, 16)).astype(np.int16)
    other_path = write_volume(tmp_path / "patient2.nrrd", Volume(hu, (0.8, 0.8, 3.0), (50.0, 0.0, 0.0)))
    viewer = make_napari_viewer()
    ct, _ = viewer.open([ct_path, other_path], plugin="lnq-napari")
    (labels,) = viewer.open(labels_path, plugin="lnq-napari")
    assert same_placement(ct, labels)
    assert set(np.argwhere(np.asarray(labels.data) > 0)[:, 0]) == {4}
    single = make_napari_viewer()
    (only_ct,) = single.open(ct_path, plugin="lnq-napari")
    make_napari_viewer()  # napari's current viewer now, no CT in it
    (labels,) = single.open(labels_path, plugin="lnq-napari")
    assert same_placement(only_ct, labels)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_a_distance_map_of_whole_values_opens_as_an_image_and_a_float_map_of_node_ids_as_labels(tmp_path,
                                                                                                  dtype):
    """A distance map in whole voxels (27 values 0..26, as float or uint8) with a plain name opened as a
    label map of 26 nested "nodes"; its values change between most neighbours, a label map's nodes are solid.
    """
    from scipy import ndimage

    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    outside = np.ones((12, 40, 40), bool)
    outside[5:7, 18:22, 18:22] = False
    distance = np.round(ndimage.distance_transform_edt(outside)).astype(dtype)
    assert 20 < len(np.unique(distance)) <= 64
    ((data, _, kind),) = _read(write_volume(tmp_path / "distance.nrrd", Volume(distance)))
    assert kind == "image" and np.array_equal(data, distance)
    ids = np.zeros(distance.shape, dtype)
    for k in range(1, 31):  # 30 nodes of their own ids, two of them touching
        z, y, x = 2 + k % 8, 3 + 6 * (k % 6), 3 + 6 * (k // 6)
        ids[z:z + 2, y:y + 4, x:x + 4] = k
    ids[2:4, 3:7, 7:9] = 31
    ((labels, _, kind),) = _read(write_volume(tmp_path / "nodes.nrrd", Volume(ids)))
    assert kind == "labels" and labels.max() == 31


@pytest.mark.gui
def test_labels_find_their_ct_in_a_viewer_not_current_without_napari_s_private_viewer_list(
    make_napari_viewer, tmp_path, monkeypatch
):
    """The reader looked for the CT of head-first labels in the viewers of napari's private
    ``Viewer._instances``: a napari without it (renamed) left the labels unpaired on their own grid when
    another viewer was current. The plugin now keeps its own list of the viewers it met."""
    import weakref

    import napari

    from lnq_napari.plugin._layers import same_placement

    ct_path, labels_path = _feet_first_ct_and_head_first_labels(tmp_path)
    single = make_napari_viewer()
    (only_ct,) = single.open(ct_path, plugin="lnq-napari")
    make_napari_viewer()  # napari's current viewer now, no CT in it
    monkeypatch.setattr(napari.Viewer, "_instances", weakref.WeakSet())  # as if napari had no such list
    (labels,) = single.open(labels_path, plugin="lnq-napari")
    assert same_placement(only_ct, labels)
    assert set(np.argwhere(np.asarray(labels.data) > 0)[:, 0]) == {4}


@pytest.mark.gui
def test_labels_find_their_ct_in_a_viewer_that_was_never_current(make_napari_viewer, tmp_path):
    """A script opened a CT into a viewer while another was current: the plugin never met that viewer,
    and head-first labels opened there later stayed on their own grid (napari's own viewer list, which
    the reader used before, knew it)."""
    from lnq_napari.plugin._layers import same_placement

    ct_path, labels_path = _feet_first_ct_and_head_first_labels(tmp_path)
    single = make_napari_viewer()
    make_napari_viewer()  # napari's current viewer from here on: the CT goes into `single`
    (only_ct,) = single.open(ct_path, plugin="lnq-napari")
    (labels,) = single.open(labels_path, plugin="lnq-napari")
    assert same_placement(only_ct, labels)
    assert set(np.argwhere(np.asarray(labels.data) > 0)[:, 0]) == {4}
