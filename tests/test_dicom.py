"""DICOM series as a PACS exports them, written from phantoms: found as cases, their contrasts
recognised (or mapped), slices ordered, rescaled, put on RAS+ axes and resampled onto one grid, so
that a case reads as its NIfTI original does; and an archive ingests them."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom", reason="DICOM needs the dicom extra: pip install 'hashindex[dicom]'")
import nibabel as nib
from archive_fakes import FakeEncoder
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from hashindex.encoder.data import find_cases, load_case

DESCRIPTIONS = {"t1": "T1 SE AX", "t1ce": "AX T1 POST GD", "t2": "T2 FSE axial", "flair": "AX T2 FLAIR"}


def write_series(folder: Path, image: nib.Nifti1Image, description: str, study: str, patient: str,
                 reverse: bool = False) -> None:
    """One file per axial slice of a RAS+ volume, in DICOM's LPS patient axes, int16 with a rescale."""
    folder.mkdir(parents=True)
    data = np.asarray(image.dataobj, np.float32)
    affine = image.affine
    slope = max(float(np.abs(data).max()) / 30000.0, 1e-6)
    series = generate_uid()
    to_lps = np.diag([-1.0, -1.0, 1.0])
    order = range(data.shape[2])
    for n, k in enumerate(reversed(order) if reverse else order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
        ds.Modality, ds.SeriesDescription, ds.InstanceNumber = "MR", description, n + 1
        ds.ImageOrientationPatient = [*(to_lps @ affine[:3, 0] / np.linalg.norm(affine[:3, 0])),
                                      *(to_lps @ affine[:3, 1] / np.linalg.norm(affine[:3, 1]))]
        ds.ImagePositionPatient = list(to_lps @ (affine @ [0, 0, k, 1])[:3])
        ds.PixelSpacing = [float(np.linalg.norm(affine[:3, 1])), float(np.linalg.norm(affine[:3, 0]))]
        ds.SliceThickness = float(np.linalg.norm(affine[:3, 2]))
        plane = np.round(data[:, :, k].T / slope).astype(np.int16)  # rows along y, columns along x
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
        ds.PixelData = plane.tobytes()
        ds.save_as(folder / f"IM{n:04d}", enforce_file_format=True)


def half_resolution(image: nib.Nifti1Image) -> nib.Nifti1Image:
    from nibabel.processing import resample_to_output

    return resample_to_output(image, voxel_sizes=np.array(image.header.get_zooms()) * [2, 2, 1], order=1)


def to_dicom(case_dir: Path, out: Path, descriptions=DESCRIPTIONS) -> Path:
    """A phantom case as DICOM series (case/series_k/IM....), T2 at half the in-plane resolution and
    its files in reverse slice order, plus a localiser series that no contrast claims."""
    study, patient = generate_uid(), case_dir.name
    for n, (contrast, description) in enumerate(descriptions.items()):
        image = nib.as_closest_canonical(nib.load(case_dir / f"{case_dir.name}_{contrast}.nii.gz"))
        if contrast == "t2":
            image = half_resolution(image)
        write_series(out / case_dir.name / f"series_{n}", image, description, study, patient, reverse=contrast == "t2")
    flair = nib.as_closest_canonical(nib.load(case_dir / f"{case_dir.name}_flair.nii.gz"))
    write_series(out / case_dir.name / "series_9", nib.Nifti1Image(np.asarray(flair.dataobj)[..., :2], flair.affine),
                 "3-plane localizer", study, patient)
    return out / case_dir.name


@pytest.fixture
def dicom_root(phantom_root, tmp_path):
    root = tmp_path / "pacs"
    for case in sorted(p for p in phantom_root.iterdir() if p.is_dir())[:2]:
        to_dicom(case, root)
    return root


def test_dicom_cases_read_as_their_nifti_originals(dicom_root, phantom_root):
    found = find_cases(dicom_root)
    assert [c.case_id for c in found] == ["Phantom_00000", "Phantom_00001"]
    assert all(c.layout == "dicom" and set(c.images) == {"t1", "t1ce", "t2", "flair"} for c in found)
    assert found[0].images["flair"].description == "AX T2 FLAIR"
    dicom = load_case(found[0])
    nifti = load_case(phantom_root / "Phantom_00000")
    assert dicom.images.shape == nifti.images.shape
    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-4)
    # the brain mask takes every contrast, the resampled T2's blurred edge included: nearly the same
    assert (dicom.mask == nifti.mask).mean() > 0.97
    inside = dicom.mask & nifti.mask
    for c in (0, 1, 3):  # the same grid as written: equal up to the int16 quantisation
        scale = np.abs(nifti.images[c]).max()
        np.testing.assert_allclose(dicom.images[c][inside], nifti.images[c][inside], atol=scale / 25000)
    # T2 went out at half the resolution, its files in reverse order: back on the FLAIR grid it is
    # what nibabel makes of the same round trip without DICOM
    from nibabel.processing import resample_from_to

    t2 = nib.as_closest_canonical(nib.load(phantom_root / "Phantom_00000" / "Phantom_00000_t2.nii.gz"))
    expected = np.asarray(resample_from_to(half_resolution(t2), t2, order=1).dataobj, np.float32)
    np.testing.assert_allclose(dicom.images[2][inside], expected[inside], atol=0.6)  # nibabel rounds to the file's ints


def test_contrast_names_a_user_maps(phantom_root, tmp_path):
    odd = {"t1": "SEQ_A", "t1ce": "SEQ_B", "t2": "SEQ_C", "flair": "SEQ_D"}
    to_dicom(sorted(p for p in phantom_root.iterdir() if p.is_dir())[0], tmp_path / "odd", odd)
    (unknown,) = find_cases(tmp_path / "odd")  # found, and what is wrong said when it is read
    with pytest.raises(ValueError, match="no DICOM series recognised.*SEQ_A.*--contrast-map"):
        load_case(unknown)
    mapping = {"seq_a": "t1", "seq_b": "t1ce", "seq_c": "t2", "seq_d": "flair"}
    (found,) = find_cases(tmp_path / "odd", contrast_map=mapping)
    assert {c: s.description for c, s in found.images.items()} == {v: k.upper() for k, v in mapping.items()}
    assert load_case(found).present == (True, True, True, True)
    (twice,) = find_cases(tmp_path / "odd", contrast_map={"seq_a": "t1", "seq_b": "t1"})
    with pytest.raises(ValueError, match="two DICOM series read as t1"):
        load_case(twice)
    with pytest.raises(ValueError, match="contrast_map"):
        find_cases(tmp_path / "odd", contrast_map={"seq_a": "t3"})


def test_archive_ingests_dicom_and_skips_it_the_second_time(dicom_root, tmp_path):
    from hashindex.encoder.archive import Archive

    with Archive.create(tmp_path / "a", FakeEncoder()) as archive:
        report = archive.add(dicom_root, FakeEncoder(), workers=1, layout="dicom")
        assert report.added == ["Phantom_00000", "Phantom_00001"] and not report.failed
        rows = {c["name"]: c for c in archive.cases()}
        assert rows["Phantom_00000"]["layout"] == "dicom" and rows["Phantom_00000"]["t2"] == 1
        assert rows["Phantom_00000"]["source"] == str(dicom_root / "Phantom_00000")
        assert archive.add(dicom_root, FakeEncoder(), workers=1).skipped == report.added
        first = sorted((dicom_root / "Phantom_00000" / "series_0").iterdir())[3]
        first.write_bytes(first.read_bytes()[:200])  # damaged after it was added: its files changed
        again = archive.add(dicom_root, FakeEncoder(), workers=1)
        assert list(again.changed) == ["Phantom_00000"] and again.skipped == ["Phantom_00001"]
    with Archive.create(tmp_path / "b", FakeEncoder()) as archive:  # damaged before: recorded, others go on
        report = archive.add(dicom_root, FakeEncoder(), workers=1)
        assert report.added == ["Phantom_00001"] and "unreadable DICOM file" in report.failed["Phantom_00000"]
        assert first.name in report.failed["Phantom_00000"]
