"""Whose scan: the PatientID from a DICOM series, a header field, or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lnq_napari.followup.identity import patient_id
from lnq_napari.io.readers import read_volume, write_volume
from lnq_napari.io.volume import Volume

SERIES = Path(__file__).parent / "data" / "dcmqi" / "ct-3slice"


def test_patient_id_of_a_dicom_series_folder_or_slice():
    ct = read_volume(SERIES)
    assert patient_id(ct, SERIES) == patient_id(ct, SERIES / "01.dcm") == "99000"
    assert patient_id(ct) is None  # the reader keeps no PatientID: the files are asked


def test_patient_id_from_a_header_field_and_none_for_plain_files(tmp_path):
    assert patient_id(Volume(np.zeros((2, 2, 2)), meta={"PatientID": " LNQ-7 "})) == "LNQ-7"
    path = write_volume(tmp_path / "a-ct.nrrd", Volume(np.zeros((2, 3, 4), np.int16)))
    assert patient_id(read_volume(path), path) is None


def test_source_fields_of_a_dicom_series_and_of_an_nrrd_header(tmp_path):
    from lnq_napari.followup.identity import source_fields

    assert source_fields(SERIES) == {"0010|0020": "99000", "0008|0020": "20030417"}
    path = write_volume(tmp_path / "a-ct.nrrd", Volume(np.zeros((2, 3, 4), np.int16),
                                                       meta={"DICOM.StudyDate": "20240301"}))
    assert source_fields(path)["DICOM.StudyDate"] == "20240301"
    assert source_fields(tmp_path / "notes.txt") == {}


def test_source_fields_of_a_dicom_series_saved_without_the_preamble(tmp_path):
    """Slices that keep their file meta but lack the 128-byte preamble (some PACS) read as the CT, but their
    PatientID was read through ITK's own choice of reader, which finds none for them: no word that two
    time points belong to different patients."""
    from lnq_napari.followup.identity import source_fields

    folder = tmp_path / "ct"
    folder.mkdir()
    for file in sorted(SERIES.iterdir()):
        (folder / file.stem).write_bytes(file.read_bytes()[132:])  # no preamble, no 'DICM'; meta kept
    assert (folder / "01").read_bytes()[:2] == b"\x02\x00"
    assert source_fields(folder) == {"0010|0020": "99000", "0008|0020": "20030417"}
