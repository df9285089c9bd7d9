"""The BraTS loader and slice preprocessing, on phantom folders and hand-made volumes."""
import shutil

import numpy as np
import pytest

pytest.importorskip("nibabel", reason="the MRI data needs the data extra: pip install 'hashindex[data]'")
pytest.importorskip("nilearn", reason="the phantoms need the data extra: pip install 'hashindex[data]'")
import nibabel as nib
from hypothesis import given, settings
from hypothesis import strategies as st

from hashindex.encoder.data import (
    Case,
    PhantomConfig,
    SliceSet,
    find_cases,
    generate_case,
    generate_phantoms,
    load_case,
    load_slices,
    slice_case,
    zscore,
)
from hashindex.encoder.data.labels import ENHANCING
from hashindex.encoder.data.phantoms import INTENSITY_SCALE


@pytest.fixture
def case_dir(tmp_path, phantom_root):
    """A private copy of one phantom case that a test may damage."""
    target = tmp_path / "set" / "Phantom_00000"
    shutil.copytree(phantom_root / "Phantom_00000", target)
    return target


def _path(case_dir, suffix):
    return case_dir / f"{case_dir.name}{suffix}.nii.gz"


def _rewrite(path, data, affine=None):
    old = nib.load(str(path))
    nib.save(nib.Nifti1Image(data, old.affine if affine is None else affine), str(path))


@pytest.mark.parametrize("naming", ["brats2021", "brats2023"])
def test_loads_both_namings_into_one_label_scheme(tmp_path, naming):
    config = PhantomConfig(spacing=4.0, healthy_fraction=0.0, naming=naming)
    generate_phantoms(tmp_path, 2, seed=5, config=config, workers=1)
    found = find_cases(tmp_path)
    assert [f.naming for f in found] == [naming, naming]
    case = load_case(found[1])
    expected = generate_case(1, 5, config)
    np.testing.assert_array_equal(case.seg, expected.seg)  # enhancing is 3 whatever the file stored
    assert ENHANCING in case.seg or expected.info["tumour"]["kind"] == "non_enhancing"
    np.testing.assert_allclose(case.images / INTENSITY_SCALE, expected.images, atol=0.6 / INTENSITY_SCALE)
    np.testing.assert_allclose(case.healthy / INTENSITY_SCALE, expected.healthy, atol=0.6 / INTENSITY_SCALE)
    np.testing.assert_array_equal(case.anatomy, expected.anatomy)
    np.testing.assert_array_equal(case.healthy_anatomy, expected.healthy_anatomy)
    np.testing.assert_allclose(case.affine, config.affine)


def test_one_case_folder_and_case_without_segmentation(case_dir):
    _path(case_dir, "_seg").unlink()
    case = load_case(case_dir)
    assert case.seg is None and case.images.shape[0] == 4
    slices = slice_case(case, size=32)
    assert slices.seg is None and np.all(slices.abnormal == -1)


def test_missing_contrast_is_allowed_and_flagged(case_dir):
    full = load_case(case_dir)
    _path(case_dir, "_t2").unlink()
    (files,) = find_cases(case_dir.parent)
    assert files.present == (True, True, False, True)
    case = load_case(files)
    assert case.present == (True, True, False, True) and np.all(case.images[2] == 0)
    np.testing.assert_array_equal(case.images[[0, 1, 3]], full.images[[0, 1, 3]])
    assert case.healthy is None  # the counterpart would have a contrast the subject lacks
    slices = slice_case(case, size=32)
    np.testing.assert_array_equal(slices.contrasts, np.tile([True, True, False, True], (len(slices), 1)))


def test_shapes_disagree(case_dir):
    _rewrite(_path(case_dir, "_flair"), np.ones((10, 10, 10), dtype=np.int16))
    with pytest.raises(ValueError, match=r"Phantom_00000_flair\.nii\.gz: shape \(10, 10, 10\) differs"):
        load_case(case_dir)


def test_affines_disagree(case_dir):
    path = _path(case_dir, "_seg")
    image = nib.load(str(path))
    affine = image.affine.copy()
    affine[0, 3] += 5
    _rewrite(path, np.asarray(image.dataobj), affine)
    with pytest.raises(ValueError, match=r"_seg\.nii\.gz: its affine differs"):
        load_case(case_dir)


def test_unreadable_file(case_dir):
    _path(case_dir, "_t1ce").write_bytes(b"not a nifti file at all" * 10)
    with pytest.raises(ValueError, match=r"_t1ce\.nii\.gz: cannot read the t1ce volume"):
        load_case(case_dir)


def test_empty_volume(case_dir):
    path = _path(case_dir, "_t1")
    _rewrite(path, np.zeros(nib.load(str(path)).shape, dtype=np.int16))
    with pytest.raises(ValueError, match=r"_t1\.nii\.gz: the t1 volume is empty"):
        load_case(case_dir)


def test_nan_volume(case_dir):
    path = _path(case_dir, "_t2")
    data = np.asarray(nib.load(str(path)).dataobj).astype(np.float32)
    data[3, 3, 3] = np.nan
    _rewrite(path, data)
    with pytest.raises(ValueError, match=r"_t2\.nii\.gz: .*NaN"):
        load_case(case_dir)


def test_unexpected_segmentation_labels(case_dir):
    path = _path(case_dir, "_seg")
    data = np.asarray(nib.load(str(path)).dataobj).copy()
    data[0, 0, 0] = 3  # BraTS 2021 files store enhancing as 4; 3 is not a label there
    _rewrite(path, data)
    with pytest.raises(ValueError, match=r"_seg\.nii\.gz: unexpected segmentation label values \[3\]"):
        load_case(case_dir)


def test_no_cases(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(FileNotFoundError, match="no BraTS cases"):
        find_cases(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        find_cases(tmp_path / "missing")


def test_case_folders_reached_through_links_are_found_once(tmp_path, phantom_root):
    """A data folder of symbolic links to the real cases, one case reached twice, and a loop."""
    data = tmp_path / "data"
    (data / "site").mkdir(parents=True)
    (data / "site" / "Phantom_00000").symlink_to(phantom_root / "Phantom_00000", target_is_directory=True)
    (data / "mirror").symlink_to(phantom_root, target_is_directory=True)  # every case, Phantom_00000 again
    (data / "site" / "loop").symlink_to(data, target_is_directory=True)  # a cycle back to the top
    found = find_cases(data)
    expected = sorted(c.case_id for c in find_cases(phantom_root))
    assert sorted(c.case_id for c in found) == expected and len(expected) >= 2
    first = next(c for c in found if c.case_id == "Phantom_00000")
    np.testing.assert_array_equal(load_case(first).seg, load_case(phantom_root / "Phantom_00000").seg)


def test_zscore_over_nonzero_voxels():
    rng = np.random.default_rng(0)
    images = rng.normal(5, 2, (2, 6, 7, 8)).astype(np.float32)
    images[:, :2] = 0
    out = zscore(images)
    for c in range(2):
        inside = images[c] != 0
        np.testing.assert_allclose(out[c][inside].mean(), 0, atol=1e-5)
        np.testing.assert_allclose(out[c][inside].std(), 1, atol=1e-5)
        assert np.all(out[c][~inside] == 0)
    with pytest.raises(ValueError, match="channel 1 is empty"):
        zscore(np.stack([images[0], np.zeros_like(images[1])]))


def _hand_case(shape=(20, 12, 6)):
    rng = np.random.default_rng(1)
    images = np.zeros((4,) + shape, dtype=np.float32)
    images[:, 4:16, 2:10, 1:5] = rng.uniform(1, 2, (4, 12, 8, 4))
    seg = np.zeros(shape, dtype=np.uint8)
    seg[8:12, 4:8, 2] = 3
    seg[6:9, 3:5, 3] = 2
    return Case("hand", images, np.eye(4), seg=seg)


def test_slices_square_resize_flags_and_empty_slices():
    case = _hand_case()
    slices = slice_case(case, size=10)
    assert slices.images.shape == (4, 4, 10, 10) and slices.images.dtype == np.float32
    np.testing.assert_array_equal(slices.slice_index, [1, 2, 3, 4])  # slices 0 and 5 hold no voxel
    np.testing.assert_array_equal(slices.abnormal, [0, 1, 1, 0])
    assert set(np.unique(slices.seg)) <= {0, 2, 3} and slices.seg[1].max() == 3
    np.testing.assert_array_equal(slices.depth, 6)
    assert list(slices.case_ids) == ["hand"] * 4
    everything = slice_case(case, size=20, drop_empty=False)
    assert len(everything) == 6 and np.all(everything.images[0] == 0)
    # padding the 12-wide axis to 20 and resizing 20 -> 20 is the identity on the labels
    np.testing.assert_array_equal(everything.seg[2][:, 4:16], case.seg[:, :, 2])
    with pytest.raises(ValueError, match="size"):
        slice_case(case, size=4)


def test_phantom_slices_keep_the_healthy_counterpart_aligned(phantom_root):
    slices = load_slices(phantom_root, size=32)
    assert slices.healthy.shape == slices.images.shape
    assert slices.anatomy.shape == slices.seg.shape == slices.healthy_anatomy.shape
    assert set(np.unique(slices.case_ids)) == {"Phantom_00000", "Phantom_00001", "Phantom_00002"}
    tumour_free = slices.abnormal == 0
    assert tumour_free.any() and (slices.abnormal == 1).any()
    far = slices.select(tumour_free)
    # many tumour-free slices lie beyond the tumour's reach, where subject and counterpart are equal
    same = [np.array_equal(a, b) for a, b in zip(far.images, far.healthy)]
    assert sum(same) >= 3
    # the flag comes from the full-resolution labels: a tumour edge may vanish when resized, never appear
    shown = np.any(slices.seg > 0, axis=(1, 2))
    assert np.all(slices.abnormal[shown] == 1) and shown.sum() > 0.8 * (slices.abnormal == 1).sum()


def test_slice_set_round_trip_and_version(tmp_path, phantom_root):
    slices = load_slices(phantom_root, size=16, cases=["Phantom_00001"])
    path = tmp_path / "s.npz"
    slices.save(path)
    again = SliceSet.load(path)
    for name in ("images", "seg", "anatomy", "healthy", "abnormal", "case_ids", "slice_index", "depth"):
        np.testing.assert_array_equal(getattr(again, name), getattr(slices, name))
    both = SliceSet.concatenate([slices, again.select(slice(0, 3))])
    assert len(both) == len(slices) + 3
    arrays = dict(np.load(path))
    arrays["format_version"] = np.array(99)
    np.savez(tmp_path / "v.npz", **arrays)
    with pytest.raises(ValueError, match="format 99"):
        SliceSet.load(tmp_path / "v.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a slice file"):
        SliceSet.load(tmp_path / "junk.npz")
    with pytest.raises(KeyError, match="nope"):
        load_slices(phantom_root, cases=["nope"])


@settings(deadline=None)
@given(side=st.integers(8, 300), size=st.sampled_from([16, 64, 128, 129]), depth=st.integers(1, 4),
       channels=st.integers(0, 2), seed=st.integers(0, 1000))
def test_resize_is_scipy_zoom_to_the_last_bit(side, size, depth, channels, seed):
    """The in-plane resize against the scipy.ndimage call it replaced (blur, then zoom with order 1
    for images, 0 for labels): the same labels, and float32 values at most one unit in the last place
    apart (zoom sums the 2 x 2 products in another order; on the demo's phantoms and every real case
    under ../shared no value differs at all, and no code cell)."""
    from scipy import ndimage as ndi

    from hashindex.encoder.data.brats import _resize

    rng = np.random.default_rng(seed)
    lead = (3,) * channels
    images = (rng.standard_normal(lead + (side, side, depth)) * 100).astype(np.float32)
    images[..., : side // 5, :, :] = 0  # background, as brains have
    labels = rng.integers(0, 4, (side, side, depth)).astype(np.uint8)
    factor = size / side
    zoom = (1.0,) * channels + (factor, factor, 1.0)
    blurred = images
    if factor < 1:
        blurred = ndi.gaussian_filter(images, (0.0,) * channels + (0.45 / factor, 0.45 / factor, 0.0))
    want = ndi.zoom(blurred, zoom, order=1, grid_mode=True, mode="grid-constant").astype(np.float32)
    got = _resize(images, size, labels=False)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_max_ulp(got, want, maxulp=1)
    assert (got != want).mean() < 1e-4
    want_labels = ndi.zoom(labels, (factor, factor, 1.0), order=0, grid_mode=True, mode="grid-constant")
    np.testing.assert_array_equal(_resize(labels, size, labels=True), want_labels)
