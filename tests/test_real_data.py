"""Real gliomas from ../shared/data/real read as they come: every layout, label scheme and
normalisation; a user's own file names; cases with two contrasts encoded and searched."""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel", reason="the MRI loader needs nibabel: pip install 'hashindex[data]'")

from hashindex.encoder.data import find_cases, load_case, load_slices  # noqa: E402
from hashindex.encoder.data.layouts import BRATS2013_LABELS, LAYOUTS, Layout  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
if not REAL.is_dir():  # a clone without the shared folder beside it
    pytestmark = pytest.mark.skip(reason=f"real cases not found at {REAL} (CI and the project's machines have them)")

EXPECTED = {  # case -> (layout, contrasts present in T1, T1CE, T2, FLAIR order, has labels)
    "brats_2013_pat0003_1": ("deepmedic", (False, True, False, True), True),
    "brats_2013_pat0004_1": ("deepmedic", (False, True, False, True), True),
    "brats_2013_pat0005_1": ("deepmedic", (False, True, False, True), True),
    "brats_2013_pat0006_1": ("deepmedic", (False, True, False, True), True),
    "BraTS-GLI-00001-000": ("brats2023", (True, True, True, True), False),
    "OtherEXampleFromTCIA": ("bet", (True, True, True, True), True),
    "TCGA-DU-7294": ("bet", (True, True, True, True), True),
    **{f"BraTS2021_{n:05d}": ("brats2021", (True, True, True, True), True) for n in (0, 2, 6, 14, 19, 24, 31)},
}


def _raw(path: Path) -> np.ndarray:
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


def test_every_real_folder_is_found_with_its_layout():
    found = {c.case_id: c for c in find_cases(REAL)}
    assert set(found) == set(EXPECTED)
    for case_id, (layout, present, labelled) in EXPECTED.items():
        assert found[case_id].layout == layout, case_id
        assert found[case_id].present == present, case_id
        assert (found[case_id].seg is not None) == labelled, case_id
    assert found["brats_2013_pat0003_1"].mask is not None  # DeepMedic ships a brain mask


def test_brats2013_labels_mask_and_zscores():
    files = next(c for c in find_cases(REAL / "brats2013") if c.case_id == "brats_2013_pat0005_1")
    case = load_case(files)
    raw_labels = _raw(files.seg).astype(int)
    assert set(np.unique(raw_labels)) == {0, 1, 2, 3, 4}
    for value, label in BRATS2013_LABELS.items():  # 3 (non-enhancing) joins the core, 4 is enhancing
        assert np.all(case.seg[raw_labels == value] == label)
    mask = _raw(files.mask) > 0.5
    np.testing.assert_array_equal(case.mask, mask)
    # the redistributor z-scored inside the brain but left a non-zero background: it is zeroed here
    assert np.all(case.images[:, ~mask] == 0)
    assert np.all(case.images[[0, 2]] == 0)  # no T1, no T2
    slices = load_slices(REAL / "brats2013", size=240, cases=["brats_2013_pat0005_1"])  # 240: no resampling
    flair = slices.images[:, 3][slices.images[:, 3] != 0]
    assert abs(flair.mean()) < 0.1 and abs(flair.std() - 1) < 0.15
    np.testing.assert_array_equal(slices.contrasts, np.tile([False, True, False, True], (len(slices), 1)))
    assert np.all(slices.images[:, [0, 2]] == 0)


def test_raw_scanner_intensities_are_zscored_inside_the_brain():
    case = load_case(REAL / "tcga-lgg" / "TCGA-DU-7294")
    t2 = _raw(REAL / "tcga-lgg" / "TCGA-DU-7294" / "TCGA-DU-7294_t2_bet.nii.gz")
    assert t2.dtype.kind == "i" and t2.min() < 0  # raw integers, some negative inside the brain
    slices = load_slices(REAL / "tcga-lgg", size=240, cases=["TCGA-DU-7294"])
    for c in range(4):
        values = slices.images[:, c][slices.images[:, c] != 0]
        assert abs(values.mean()) < 0.1 and abs(values.std() - 1) < 0.15, c
    assert set(np.unique(case.seg)) <= {0, 1, 2, 3}
    assert case.mask.sum() > 0.9 * (t2 != 0).sum()


def test_unlabelled_brats2023_case_and_canonical_orientation():
    case = load_case(REAL / "brats2023" / "BraTS-GLI-00001-000")
    assert case.seg is None and case.present == (True,) * 4
    assert np.all(np.diag(case.affine)[:3] > 0)  # turned to RAS+, like the phantoms
    raw = _raw(REAL / "brats2023" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t2f.nii.gz")
    np.testing.assert_array_equal(case.images[3], raw.astype(np.float32))
    stored = nib.load(str(REAL / "brats2023" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t2f.nii.gz"))
    assert nib.aff2axcodes(stored.affine) != ("R", "A", "S")  # so the turn above was real work


def test_whole_real_folder_loads_into_one_slice_set():
    slices = load_slices(REAL, size=32, workers=2)
    assert set(np.unique(slices.case_ids)) == set(EXPECTED)
    unlabelled = slices.case_ids == "BraTS-GLI-00001-000"
    assert np.all(slices.abnormal[unlabelled] == -1) and np.all(slices.abnormal[~unlabelled] >= 0)
    assert slices.seg is not None and np.all(slices.seg[unlabelled] == 0)


def _user_case(tmp_path: Path) -> Path:
    """pat0006 under names no built-in layout knows."""
    src = REAL / "brats2013" / "brats_2013_pat0006_1"
    case = tmp_path / "mine" / "subject-A"
    case.mkdir(parents=True)
    os.symlink(src / "Flair_subtrMeanDivStd.nii.gz", case / "A_dark_fluid.nii.gz")
    os.symlink(src / "T1c_subtrMeanDivStd.nii.gz", case / "A_T1post.nii.gz")
    os.symlink(src / "OTMultiClass.nii.gz", case / "A_expert_labels.nii.gz")
    os.symlink(src / "brainmask.nii.gz", case / "A_brain.nii.gz")
    return case


def test_user_layout_from_json(tmp_path):
    case = _user_case(tmp_path)
    with pytest.raises(FileNotFoundError, match="pass a layout"):
        find_cases(case.parent)
    spec = {"name": "mine", "contrasts": {"flair": "*_dark_fluid", "t1ce": "*_T1post"},
            "seg": "*_expert_labels", "mask": "*_brain", "labels": {str(k): v for k, v in BRATS2013_LABELS.items()}}
    (tmp_path / "layout.json").write_text(json.dumps(spec))
    mine = load_case(case, layout=tmp_path / "layout.json")
    reference = load_case(REAL / "brats2013" / "brats_2013_pat0006_1")
    np.testing.assert_array_equal(mine.images, reference.images)
    np.testing.assert_array_equal(mine.seg, reference.seg)
    assert mine.present == reference.present
    # without the label map the 2013 file's value 3 is refused rather than misread
    plain = Layout.from_dict({k: v for k, v in spec.items() if k != "labels"})
    with pytest.raises(ValueError, match=r"unexpected segmentation label values \[3\]"):
        load_case(case, layout=plain)


def test_layout_errors(tmp_path):
    case = _user_case(tmp_path)
    os.symlink(case / "A_T1post.nii.gz", case / "B_T1post.nii.gz")
    layout = Layout("two", {"t1ce": "*_T1post"})
    with pytest.raises(ValueError, match="2 files match the t1ce pattern"):
        find_cases(case, layout=layout)
    with pytest.raises(ValueError, match="contrasts: unknown contrast"):
        Layout("bad", {"pd": "*"})
    with pytest.raises(ValueError, match="labels"):
        Layout.from_dict({"contrasts": {"t1": "*"}, "labels": {"1": 9}})
    with pytest.raises(ValueError, match="layout: expected one of"):
        find_cases(case, layout="brats1999")
    assert set(LAYOUTS) == {"brats2021", "brats2023", "deepmedic", "bet"}


def _torch():
    return pytest.importorskip("torch", reason="encoding needs torch: pip install 'hashindex[encoder]'")


@pytest.fixture(scope="module")
def subset_model(tmp_path_factory):
    """A tiny model with contrast inputs, trained a few steps on two real cases (FLAIR+T1c and all four)."""
    _torch()
    from hashindex.encoder.model import EncoderConfig
    from hashindex.encoder.train import TrainConfig, train

    cfg = EncoderConfig("tiny-any", 32, (8, 16, 16), stem_levels=1, codebook_size=16, code_dim=8,
                        contrast_inputs=True)
    slices = load_slices(REAL, size=32, cases=["brats_2013_pat0003_1", "TCGA-DU-7294"])
    path = tmp_path_factory.mktemp("model") / "any.pt"
    train(slices, path, config=cfg, training=TrainConfig(lr=2e-3, batch_size=8), epochs=1, max_steps=4, val_fraction=0.0, progress=False, log=lambda _: None)
    return path


def test_two_contrast_case_encodes_segments_and_is_searchable(subset_model):
    import hashindex
    from hashindex.encoder.codes import CodeEncoder

    enc = CodeEncoder.load(subset_model)
    slices = load_slices(REAL / "brats2013", size=32, cases=["brats_2013_pat0004_1"])
    codes = enc.encode(slices.images)  # contrasts inferred: FLAIR and T1CE
    explicit = enc.encode(slices.images, present=[False, True, False, True])
    np.testing.assert_array_equal(codes.normal_indices, explicit.normal_indices)
    assert enc.segment(slices.images).shape == slices.seg.shape
    assert enc.pseudo_normal(slices.images).shape == slices.images.shape
    index = hashindex.MultiFieldIndex({"normal": codes.normal_nbits, "abnormal": codes.abnormal_nbits})
    index.add({"normal": codes.normal_bits, "abnormal": codes.abnormal_bits})
    found = index.search({"normal": codes.normal_bits[:3], "abnormal": codes.abnormal_bits[:3]}, 1)
    np.testing.assert_array_equal(found.distances[:, 0], 0)
    # telling the model a contrast is there changes what it sees
    assert not np.array_equal(enc.latents(slices.images[:4], present=[True] * 4)[0],
                              enc.latents(slices.images[:4])[0])
    with pytest.raises(ValueError, match="at least one contrast"):
        enc.encode(slices.images[:2], present=[False] * 4)
    with pytest.raises(ValueError, match="present: expected shape"):
        enc.encode(slices.images[:2], present=[True, True])


def test_four_contrast_model_refuses_a_subset(tmp_path, phantom_root):
    _torch()
    from hashindex.encoder.codes import CodeEncoder
    from hashindex.encoder.model import EncoderConfig
    from hashindex.encoder.train import TrainConfig, train

    cfg = EncoderConfig("tiny4", 32, (8, 16, 16), stem_levels=1, codebook_size=16, code_dim=8)
    train(load_slices(phantom_root, size=32), tmp_path / "m.pt", config=cfg, epochs=1, max_steps=1,
          val_fraction=0.0, progress=False, log=lambda _: None)
    enc = CodeEncoder.load(tmp_path / "m.pt")
    slices = load_slices(REAL / "brats2013", size=32, cases=["brats_2013_pat0004_1"])
    with pytest.raises(ValueError, match="trained on all four contrasts"):
        enc.encode(slices.images)
    with pytest.raises(ValueError, match="no contrast inputs"):
        train(slices, tmp_path / "x.pt", config=cfg, training=TrainConfig(contrast_dropout=0.5), epochs=1,
              progress=False)
    with pytest.raises(ValueError, match="some cases lack contrasts"):
        train(slices, tmp_path / "x.pt", config=dataclasses.replace(cfg, name="t"), epochs=1, progress=False)


def test_evaluation_keys_on_real_and_phantom_data(subset_model, tmp_path, phantom_root):
    from hashindex.encoder.evaluate import evaluate_dataset

    real = evaluate_dataset(REAL / "brats2013", tmp_path / "real.json", checkpoint=subset_model, max_queries=40,
                            query_cases=["brats_2013_pat0005_1"], log=lambda _: None)
    record = json.loads((tmp_path / "real.json").read_text())
    assert set(record["segmentation"]) == {"whole", "core", "enhancing", "cases"}
    assert set(record["segmentation"]["cases"]) == {"brats_2013_pat0005_1"}
    assert 0 <= record["segmentation"]["whole"] <= 1
    assert "mse_in_tumour" not in record["pseudo_normal"]
    assert any("pseudo_normal: skipped" in note for note in record["notes"])
    assert "abnormal code (Hamming)" in real.rows
    evaluate_dataset(phantom_root, tmp_path / "ph.json", checkpoint=subset_model, max_queries=40, log=lambda _: None)
    record = json.loads((tmp_path / "ph.json").read_text())
    assert {"mse_in_tumour", "ssim_in_tumour", "mse_outside_tumour", "ssim_in_tumour_reference",
            "mse_in_tumour_reference"} <= set(record["pseudo_normal"])
    assert record["pseudo_normal"]["mse_in_tumour"] > 0 and -1 <= record["pseudo_normal"]["ssim_in_tumour"] <= 1
    assert {"whole", "core", "enhancing"} <= set(record["segmentation"])


def test_evaluation_with_fewer_contrasts(subset_model, tmp_path, phantom_root):
    from hashindex.encoder.evaluate import evaluate_dataset, keep_contrasts

    slices = load_slices(phantom_root, size=32)
    two = keep_contrasts(slices, ["flair", "t1ce"])
    assert np.all(two.images[:, [0, 2]] == 0) and np.all(two.healthy[:, [0, 2]] == 0)
    np.testing.assert_array_equal(two.images[:, [1, 3]], slices.images[:, [1, 3]])
    assert not two.contrasts[:, [0, 2]].any() and two.contrasts[:, [1, 3]].all()
    with pytest.raises(ValueError, match="contrasts: expected a non-empty subset"):
        keep_contrasts(slices, ["pd"])
    table = evaluate_dataset(phantom_root, tmp_path / "two.json", checkpoint=subset_model, max_queries=30,
                             contrasts=["flair", "t1ce"], log=lambda _: None)
    assert "mse_in_tumour" in table.pseudo_normal and "whole" in table.segmentation
