"""Synthetic glioma phantoms: determinism, labels, contrasts, the healthy counterpart, the files."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("nibabel", reason="the MRI data needs the data extra: pip install 'hashindex[data]'")
pytest.importorskip("nilearn", reason="the phantoms need the data extra: pip install 'hashindex[data]'")
from conftest import SMALL_PHANTOMS

from hashindex.cli import main as cli
from hashindex.encoder.data import PhantomConfig, find_cases, generate_case, generate_phantoms, load_case
from hashindex.encoder.data.labels import CSF, ENHANCING, GREY, NECROTIC, OEDEMA, VENTRICLES, WHITE
from hashindex.encoder.data.montage import render_montage
from hashindex.encoder.data.phantoms import CONTRASTS, INTENSITY_SCALE

CONFIG = PhantomConfig(**SMALL_PHANTOMS)
T1, T1CE, T2, FLAIR = (CONTRASTS.index(c) for c in ("t1", "t1ce", "t2", "flair"))


@pytest.fixture(scope="module")
def cases():
    return [generate_case(i, 11, CONFIG) for i in range(4)]


def test_deterministic_for_a_seed_and_independent_of_order():
    a = generate_case(2, 3, CONFIG)
    b = generate_case(2, 3, CONFIG)
    for name in ("images", "seg", "anatomy", "healthy", "healthy_anatomy"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.info == b.info
    other = generate_case(2, 4, CONFIG)
    assert not np.array_equal(a.images, other.images)


def test_shapes_dtypes_and_label_values(cases):
    for case in cases:
        assert case.images.shape == (4,) + CONFIG.shape and case.images.dtype == np.float32
        assert case.healthy.shape == case.images.shape
        assert set(np.unique(case.seg)) <= {0, NECROTIC, OEDEMA, ENHANCING}
        assert set(np.unique(case.anatomy)) == {0, CSF, VENTRICLES, GREY, WHITE}
        assert set(np.unique(case.healthy_anatomy)) == {0, CSF, VENTRICLES, GREY, WHITE}
        assert (case.seg > 0).any() and OEDEMA in case.seg
        assert np.all(case.images >= 0) and np.isfinite(case.images).all()
        # skull-stripped like BraTS: nothing outside the brain
        assert np.all(case.healthy[:, case.healthy_anatomy == 0] == 0)
    assert {c.info["tumour"]["kind"] for c in cases} >= {"necrotic"}


def test_subjects_differ_in_anatomy(cases):
    a, b = cases[0].healthy_anatomy, cases[1].healthy_anatomy
    brain = (a > 0) | (b > 0)
    assert np.mean(a[brain] != b[brain]) > 0.05


def _mean(volume, mask):
    assert mask.sum() > 20
    return float(volume[mask].mean())


def test_tissue_contrasts_are_ordered_as_in_mri():
    # 2 mm: at 4 mm nearly every grey-matter voxel also holds CSF, which is dark on FLAIR.
    case = generate_case(0, 11, PhantomConfig(spacing=2.0, healthy_fraction=1.0))
    anatomy, images = case.healthy_anatomy, case.healthy
    csf, grey, white = anatomy == VENTRICLES, anatomy == GREY, anatomy == WHITE
    t1 = [_mean(images[T1], m) for m in (csf, grey, white)]
    t2 = [_mean(images[T2], m) for m in (csf, grey, white)]
    flair = [_mean(images[FLAIR], m) for m in (csf, grey, white)]
    assert t1[0] < t1[1] < t1[2], t1  # CSF dark, white brighter than grey on T1
    assert t2[0] > t2[1] > t2[2], t2  # CSF bright, white darker than grey on T2
    assert flair[0] < flair[2] < flair[1], flair  # CSF suppressed on FLAIR


def test_tumour_compartments_look_like_a_glioma(cases):
    for case in cases:
        white = (case.anatomy == WHITE) & (case.seg == 0)
        oedema = case.seg == OEDEMA
        assert _mean(case.images[FLAIR], oedema) > 1.3 * _mean(case.images[FLAIR], white)
        assert _mean(case.images[T2], oedema) > 1.3 * _mean(case.images[T2], white)
        if case.info["tumour"]["kind"] in ("necrotic", "solid"):
            assert _mean(case.images[T1CE], case.seg == ENHANCING) > 1.2 * _mean(case.images[T1CE], white)
        if case.info["tumour"]["kind"] == "necrotic":
            assert _mean(case.images[T1CE], case.seg == NECROTIC) < _mean(case.images[T1CE], case.seg == ENHANCING)


def test_oedema_spreads_further_in_white_than_grey_matter(cases):
    spread = {GREY: [], WHITE: []}
    for case in cases:
        near = case.seg != 0
        for tissue in spread:
            at_risk = (case.anatomy == tissue) | ((case.seg == OEDEMA) & (case.healthy_anatomy == tissue))
            spread[tissue].append(np.mean(case.seg[at_risk & _dilate(near, 2)] == OEDEMA))
    assert np.mean(spread[WHITE]) > np.mean(spread[GREY])


def _dilate(mask, iterations):
    from scipy import ndimage as ndi

    return ndi.binary_dilation(mask, iterations=iterations)


def test_healthy_counterpart_differs_only_around_the_tumour(cases):
    for case in cases:
        tumour = case.info["tumour"]
        centre = np.array(tumour["center_voxel"])
        reach = (3.0 * tumour["core_radius_mm"] + 1.6 * tumour["oedema_mm"] + 3.0) / CONFIG.spacing
        grid = np.indices(CONFIG.shape)
        far = np.max(np.abs(grid - centre[:, None, None, None]), axis=0) > np.ceil(reach)
        np.testing.assert_array_equal(case.images[:, far], case.healthy[:, far])
        np.testing.assert_array_equal(case.anatomy[far], case.healthy_anatomy[far])
        assert not np.any(case.seg[far])
        # inside the tumour the images differ, and mass effect moves anatomy outside it
        assert np.abs(case.images[:, case.seg > 0] - case.healthy[:, case.seg > 0]).mean() > 0.05
        moved = (case.anatomy != case.healthy_anatomy) & (case.seg == 0)
        assert moved.sum() > 0


def test_healthy_fraction():
    healthy = generate_case(0, 1, PhantomConfig(spacing=4.0, healthy_fraction=1.0))
    assert healthy.info["tumour"] is None and not healthy.seg.any()
    np.testing.assert_array_equal(healthy.images, healthy.healthy)
    np.testing.assert_array_equal(healthy.anatomy, healthy.healthy_anatomy)


@pytest.mark.parametrize("kwargs", [dict(spacing=0.0), dict(spacing=20.0), dict(healthy_fraction=1.5),
                                    dict(naming="brats2019"), dict(noise=-1.0)])
def test_bad_config(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PhantomConfig(**kwargs)


@pytest.mark.parametrize("naming,files,enhancing", [
    ("brats2021", ("_t1", "_t1ce", "_t2", "_flair", "_seg", "_anat", "_healthy_t1", "_healthy_anat"), 4),
    ("brats2023", ("-t1n", "-t1c", "-t2w", "-t2f", "-seg", "-anat", "-healthy-t1n", "-healthy-anat"), 3),
])
def test_written_in_brats_layout(tmp_path, naming, files, enhancing):
    import nibabel as nib

    config = PhantomConfig(spacing=4.0, healthy_fraction=0.0, naming=naming)
    manifest = generate_phantoms(tmp_path, 2, seed=5, config=config, workers=1)
    case = manifest["cases"][0]["case"]
    for suffix in files:
        assert (tmp_path / case / f"{case}{suffix}.nii.gz").is_file()
    seg_file = np.asarray(nib.load(str(tmp_path / case / f"{case}{files[4]}.nii.gz")).dataobj)
    generated = generate_case(0, 5, config)
    expected = generated.seg.copy()
    expected[expected == ENHANCING] = enhancing
    np.testing.assert_array_equal(seg_file, expected)
    t1 = np.asarray(nib.load(str(tmp_path / case / f"{case}{files[0]}.nii.gz")).dataobj)
    assert t1.dtype == np.int16
    np.testing.assert_allclose(t1 / INTENSITY_SCALE, generated.images[0], atol=0.6 / INTENSITY_SCALE)
    assert json.loads((tmp_path / "phantoms.json").read_text())["config"]["naming"] == naming


def test_set_is_a_cache_and_refuses_other_parameters(tmp_path):
    generate_phantoms(tmp_path, 1, seed=5, config=CONFIG, workers=1)
    first = next(tmp_path.glob("*/*_t1.nii.gz"))
    stamp = first.stat().st_mtime_ns
    manifest = generate_phantoms(tmp_path, 2, seed=5, config=CONFIG, workers=1)
    assert first.stat().st_mtime_ns == stamp  # case 0 reused, case 1 added
    assert [c["case"] for c in manifest["cases"]] == ["Phantom_00000", "Phantom_00001"]
    with pytest.raises(FileExistsError, match="other parameters"):
        generate_phantoms(tmp_path, 2, seed=6, config=CONFIG, workers=1)
    assert not list(tmp_path.glob(".*"))  # no staging folders left behind


def test_parallel_workers_give_the_same_cases(tmp_path, phantom_root):
    generate_phantoms(tmp_path, 3, seed=5, config=CONFIG, workers=2)
    for a, b in zip(find_cases(tmp_path), find_cases(phantom_root)):
        np.testing.assert_array_equal(load_case(a).images, load_case(b).images)


@pytest.mark.parametrize("kwargs,match", [(dict(cases=0), "cases"), (dict(cases=2.5), "cases"),
                                          (dict(cases=1, seed=-1), "seed")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_phantoms(tmp_path, **kwargs)


def test_montage_png(tmp_path, phantom_root):
    out = render_montage(load_case(find_cases(phantom_root)[0]), tmp_path / "m.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="slice_index"):
        render_montage(load_case(find_cases(phantom_root)[0]), tmp_path / "m.png", slice_index=10_000)


def test_cli(tmp_path, capsys):
    out = tmp_path / "set"
    assert cli(["phantoms", "--out", str(out), "--cases", "1", "--spacing", "4", "--quiet", "--montage"]) == 0
    assert "1 cases" in capsys.readouterr().out and (out / "montage.png").is_file()
    assert cli(["montage", str(out / "Phantom_00000"), "--out", str(tmp_path / "x.png"), "--slice", "20"]) == 0
    assert cli(["phantoms", "--out", str(out), "--cases", "1", "--seed", "9", "--quiet"]) == 2
    assert "other parameters" in capsys.readouterr().err
    assert os.path.isfile(tmp_path / "x.png")
