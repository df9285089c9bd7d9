"""The decomposition network, its training loop, checkpoints and the codes it produces."""
import dataclasses
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("torch", reason="the encoder needs torch: pip install 'hashindex[encoder]'")
pytest.importorskip("nibabel", reason="the MRI data needs the data extra: pip install 'hashindex[data]'")
import torch

import hashindex
from hashindex.encoder.augment import augment, drop_contrasts, intensity_jitter
from hashindex.encoder.codes import CodeEncoder
from hashindex.encoder.data import load_slices
from hashindex.encoder.hashing import CodeHasher, itq_signatures, latent_distances, ranking_recall
from hashindex.encoder.model import CONFIGS, DecompositionNet, EncoderConfig, VectorQuantizer
from hashindex.encoder.train import (
    TRAINING,
    TrainConfig,
    export_weights,
    model_from_checkpoint,
    read_checkpoint,
    split_by_case,
    train,
    validation_metrics,
)

TINY = EncoderConfig("tiny", 32, (8, 16, 16), stem_levels=1, codebook_size=16, code_dim=8)
FAST = TrainConfig(lr=2e-3, batch_size=8)


@pytest.fixture(scope="module")
def slices(phantom_root):
    return load_slices(phantom_root, size=32)


@pytest.mark.parametrize("name", ["small", "base", "paper"])
def test_shapes_and_dtypes(name):
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = DecompositionNet(cfg).eval()
    x = torch.randn(2, 4, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        out = model(x)
    g = cfg.grid
    assert g == 8
    assert out["q_normal"].shape == out["q_abnormal"].shape == (2, cfg.code_dim, g, g)
    assert out["normal_indices"].shape == (2, g, g) and out["normal_indices"].dtype == torch.int64
    assert out["seg_logits"].shape == (2, cfg.classes, cfg.image_size, cfg.image_size)
    assert out["recon"].shape == out["pseudo_normal"].shape == x.shape
    assert out["recon"].dtype == torch.float32


def test_ema_update_matches_the_formula():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, decay=0.9, eps=1e-5, restart_below=0.0)
    vq.initialised.fill_(True)
    codebook = vq.codebook.clone()
    z = torch.randn(1, 2, 3, 5)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    nearest = torch.cdist(flat, codebook).argmin(1)
    onehot = torch.nn.functional.one_hot(nearest, 4).float()
    size = 0.9 * torch.ones(4) + 0.1 * onehot.sum(0)
    embed = 0.9 * codebook + 0.1 * onehot.t() @ flat
    total = size.sum()
    expected = embed / ((size + 1e-5) / (total + 4e-5) * total)[:, None]
    vq.train()
    vq(z)
    torch.testing.assert_close(vq.cluster_size, size)
    torch.testing.assert_close(vq.codebook, expected)


def test_straight_through_and_commitment():
    torch.manual_seed(1)
    vq = VectorQuantizer(8, 3).eval()
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    q, idx, commitment = vq(z)
    expected_q = vq.lookup(idx)
    torch.testing.assert_close(q, expected_q)
    torch.testing.assert_close(commitment, torch.nn.functional.mse_loss(z, expected_q))
    upstream = torch.randn_like(q)
    (q * upstream).sum().backward()
    torch.testing.assert_close(z.grad, upstream)  # the quantiser passes gradients straight through


def test_dead_codes_are_restarted_onto_encoder_outputs():
    vq = VectorQuantizer(6, 2, decay=0.5, restart_below=0.3).train()
    vq.initialised.fill_(True)
    vq.codebook[5] = 1000.0  # never the nearest
    vq.embed_sum[5] = 1000.0
    z = torch.randn(1, 2, 4, 4)
    for _ in range(3):
        vq(z)
    assert int(vq.restarts) >= 1
    assert float(vq.codebook[5].abs().max()) < 100


def test_eval_decoding_indices_reproduces_the_quantised_latents():
    torch.manual_seed(2)
    model = DecompositionNet(TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 4, 32, 32))
        torch.testing.assert_close(model.normal_vq.lookup(out["normal_indices"]), out["q_normal"])
        torch.testing.assert_close(model.abnormal_vq.lookup(out["abnormal_indices"]), out["q_abnormal"])
        again = model.decode_indices(out["normal_indices"], out["abnormal_indices"])
        torch.testing.assert_close(again["recon"], out["recon"])
        torch.testing.assert_close(again["pseudo_normal"], out["pseudo_normal"])


def test_tiny_model_overfits_a_few_phantom_slices(slices, tmp_path):
    few = slices.select(np.flatnonzero(slices.abnormal == 1)[:16])
    torch.manual_seed(0)
    before = validation_metrics(DecompositionNet(TINY), few)
    metrics = train(few, tmp_path / "tiny.pt", config=TINY, training=FAST, epochs=60, seed=0, val_fraction=0.0, progress=False,
                    log=lambda _: None)
    model = model_from_checkpoint(read_checkpoint(tmp_path / "tiny.pt"))
    after = validation_metrics(model, few)
    history = read_checkpoint(tmp_path / "tiny.pt")["history"]
    assert history[-1]["train_total"] < 0.6 * history[0]["train_total"]
    assert after["recon_mse"] < 0.5 * before["recon_mse"]
    assert after["dice_whole"] > max(0.3, before["dice_whole"] + 0.2), (before["dice_whole"], after["dice_whole"])
    assert metrics["epoch"] == 60


def test_resume_gives_the_same_model_as_an_uninterrupted_run(slices, tmp_path):
    part = slices.select(np.arange(24))
    kw = dict(config=TINY, training=FAST, seed=3, val_fraction=0.0, progress=False, log=lambda _: None)
    train(part, tmp_path / "straight.pt", epochs=2, **kw)
    train(part, tmp_path / "split.pt", epochs=1, **kw)
    logs = []
    train(part, tmp_path / "split.pt", epochs=2, **{**kw, "log": logs.append})
    assert any("resuming" in line for line in logs)
    a = read_checkpoint(tmp_path / "straight.pt")["model"]
    b = read_checkpoint(tmp_path / "split.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    with pytest.raises(ValueError, match="another config or seed"):
        train(part, tmp_path / "split.pt", epochs=3, **{**kw, "seed": 4})


def test_checkpoint_round_trip_export_and_bad_files(slices, tmp_path):
    train(slices.select(np.arange(16)), tmp_path / "m.pt", config=TINY, training=FAST, epochs=1, val_fraction=0.0,
          progress=False, log=lambda _: None)
    state = read_checkpoint(tmp_path / "m.pt")
    model = model_from_checkpoint(state)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model"][key].float() if value.is_floating_point() else state["model"][key])
    export_weights(tmp_path / "m.pt", tmp_path / "w.pt")
    assert (tmp_path / "w.pt").stat().st_size < (tmp_path / "m.pt").stat().st_size / 2
    exported = model_from_checkpoint(read_checkpoint(tmp_path / "w.pt"))
    torch.testing.assert_close(exported.normal_vq.codebook, model.normal_vq.codebook)  # kept float32
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a hashindex encoder checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    state["version"] = 99
    torch.save(state, tmp_path / "v.pt")
    with pytest.raises(ValueError, match="version 99"):
        read_checkpoint(tmp_path / "v.pt")


def test_critic_step_runs(slices, tmp_path):
    mixed = slices.select(np.r_[np.flatnonzero(slices.abnormal == 1)[:8], np.flatnonzero(slices.abnormal == 0)[:8]])
    metrics = train(mixed, tmp_path / "c.pt", config=TINY, training=replace(FAST, critic=True), epochs=1, val_fraction=0.0,
                    progress=False, log=lambda _: None)
    assert np.isfinite(metrics["train_total"])
    assert "critic" in read_checkpoint(tmp_path / "c.pt")


def test_contrast_dropout_keeps_a_non_empty_subset_of_what_is_there():
    gen = torch.Generator().manual_seed(0)
    available = torch.tensor([[True] * 4] * 200 + [[False, True, False, True]] * 200)
    shown = drop_contrasts(available, gen, 0.5)
    assert shown.any(1).all() and not (shown & ~available).any()  # never a contrast the scan lacks
    dropped = (shown != available).any(1)
    assert 0.3 < dropped[:200].float().mean() < 0.7  # about half of the images see a subset
    pair = torch.tensor([False, True, False, True])
    assert (shown[:200] == pair).all(1).sum() > 20  # FLAIR + T1CE alone is drawn often
    assert torch.equal(drop_contrasts(available, gen, 0.0), available)


def test_intensity_jitter_keeps_the_background_and_pairs_together():
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(3, 4, 8, 8)
    x[:, :, 2:6, 2:6] = torch.randn(3, 4, 4, 4)
    healthy = x.clone()
    out, out_h = intensity_jitter(x, gen, (healthy,))
    assert torch.all(out[x == 0] == 0) and torch.all(out_h[x == 0] == 0)
    assert not torch.equal(out, x)
    # the counterpart gets the same gain and offset, not the noise
    assert torch.allclose(out_h, out, atol=0.5) and not torch.equal(out_h, out)


def test_augment_keeps_labels_and_shapes():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 4, 16, 16)
    seg = torch.randint(0, 4, (4, 16, 16))
    x2, seg2 = augment(x, seg, gen)
    assert x2.shape == x.shape and seg2.shape == seg.shape and seg2.dtype == torch.int64
    assert set(seg2.unique().tolist()) <= {0, 1, 2, 3}


def test_ssim_map_matches_the_windowed_formula():
    """ssim_map against SSIM computed pixel by pixel in numpy: an 11x11 Gaussian window (sigma 1.5)
    over the reflect-padded images, the local means, variances and covariance as weighted sums."""
    from hashindex.encoder.losses import ssim_map

    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 3, 19, 14)).astype(np.float32)
    b = (a + rng.normal(scale=0.5, size=a.shape)).astype(np.float32)
    x = np.arange(11) - 5.0
    g = np.exp(-x**2 / (2 * 1.5**2))
    window = np.outer(g, g) / g.sum() ** 2
    pa, pb = (np.pad(v.astype(np.float64), ((0, 0), (0, 0), (5, 5), (5, 5)), mode="reflect") for v in (a, b))
    expected = np.empty(a.shape)
    c1, c2 = (0.01 * 8) ** 2, (0.03 * 8) ** 2
    for i in range(a.shape[2]):
        for j in range(a.shape[3]):
            wa, wb = pa[:, :, i:i + 11, j:j + 11], pb[:, :, i:i + 11, j:j + 11]
            mu_a, mu_b = (wa * window).sum((2, 3)), (wb * window).sum((2, 3))
            var_a = (wa * wa * window).sum((2, 3)) - mu_a**2
            var_b = (wb * wb * window).sum((2, 3)) - mu_b**2
            cov = (wa * wb * window).sum((2, 3)) - mu_a * mu_b
            expected[:, :, i, j] = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    got = ssim_map(torch.from_numpy(a), torch.from_numpy(b), per_channel=True).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)
    np.testing.assert_allclose(ssim_map(torch.from_numpy(a), torch.from_numpy(b)).numpy(), expected.mean(1, keepdims=True),
                               atol=2e-5)


def test_split_by_case_never_shares_a_case():
    ids = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 4 + ["d"] * 2)
    train_rows, val_cases = split_by_case(ids, 0.25, seed=0)
    assert len(val_cases) == 1 and not set(ids[train_rows]) & set(val_cases)
    assert set(ids[~train_rows]) == set(val_cases)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(5)
    return CodeEncoder(DecompositionNet(TINY), method="onehot", batch_size=5)


def test_encode_is_deterministic_and_onehot_counts_cells(encoder, slices):
    images = slices.images[:12]
    a, b = encoder.encode(images), encoder.encode(images)
    np.testing.assert_array_equal(a.normal_bits, b.normal_bits)
    np.testing.assert_array_equal(a.abnormal_indices, b.abnormal_indices)
    assert a.normal_bits.shape == (12, a.normal_nbits // 8) and a.normal_bits.dtype == np.uint8
    assert a.normal_nbits == TINY.grid**2 * TINY.codebook_size
    d = hashindex.hamming_distances(a.normal_bits[:1], a.normal_bits)[0]
    cells = (a.normal_indices[:1] != a.normal_indices).reshape(12, -1).sum(1)
    np.testing.assert_array_equal(d, 2 * cells)
    seg = encoder.segment(images)
    assert seg.shape == (12, 32, 32) and seg.dtype == np.uint8
    assert encoder.pseudo_normal(images).shape == images.shape
    z_n, z_a = encoder.latents(images[:3])
    assert z_n.shape == (3, TINY.code_dim, TINY.grid, TINY.grid)
    with_latents = encoder.encode(images, keep_latents=True)  # one forward pass for both
    np.testing.assert_array_equal(with_latents.normal_bits, a.normal_bits)
    np.testing.assert_array_equal(with_latents.latents[0][:3], z_n)
    assert a.latents is None


@pytest.mark.parametrize("images,error,match", [
    (np.zeros((2, 3, 32, 32), np.float32), ValueError, r"images: expected shape \(N, 4, 32, 32\)"),
    (np.zeros((2, 4, 64, 64), np.float32), ValueError, "images: expected shape"),
    (np.full((1, 4, 32, 32), np.nan, np.float32), ValueError, "NaN"),
    ([[0.0]], TypeError, "images: expected a numpy array"),
    (np.zeros((1, 4, 32, 32), dtype=object), TypeError, "dtype"),
])
def test_bad_images(encoder, images, error, match):
    with pytest.raises(error, match=match):
        encoder.encode(images)


def test_signatures_track_codeword_distances():
    rng = np.random.default_rng(0)
    codebook = rng.standard_normal((64, 16))
    sig = itq_signatures(codebook, 8, seed=0)
    assert sig.shape == (64, 8) and set(np.unique(sig)) <= {0, 1}
    np.testing.assert_array_equal(sig, itq_signatures(codebook, 8, seed=0))
    euclid = np.linalg.norm(codebook[:, None] - codebook[None], axis=-1).ravel()
    hamming = (sig[:, None] != sig[None]).sum(-1).ravel()
    assert np.corrcoef(euclid, hamming)[0, 1] > 0.5
    assert itq_signatures(codebook, 32).shape == (64, 32)  # more bits than dimensions
    with pytest.raises(ValueError, match="bits"):
        CodeHasher(codebook, 4, "signature", bits=0)
    with pytest.raises(ValueError, match="method"):
        CodeHasher(codebook, 4, "lsh")


def test_ranking_recall_on_a_hand_made_case():
    codebook = np.array([[0.0], [1.0], [10.0], [11.0]])
    database = np.array([[[3, 3]], [[0, 0]], [[2, 2]], [[1, 1]]])  # ids 0..3, one row of 2 cells each
    queries = np.array([[[0, 0]]])
    np.testing.assert_allclose(latent_distances(codebook, queries, database), [[242, 0, 200, 2]])
    hasher = CodeHasher(codebook, 2, "onehot")  # 2 cells x 4 bits
    # truth: ids {1, 3}; one-hot finds id 1 at 0 and the rest tied at 4, broken by id: {1, 0}
    assert ranking_recall(codebook, queries, database, hasher, k=2) == 0.5
    assert ranking_recall(codebook, queries, database, hasher, k=1) == 1.0
    # with ties: id 0 (latent distance 242) is not as near as the 2nd reference item (2): still a miss
    assert ranking_recall(codebook, queries, database, hasher, k=2, ties=True) == 0.5
    tied = np.array([[[0, 0]], [[1, 1]], [[1, 1]], [[3, 3]]])  # ids 1 and 2 tie at the 2nd distance
    # the reference lists {0, 1}; Hamming (one-hot) returns {0, 1} too, and {0, 2} would count fully with ties
    assert ranking_recall(codebook, queries, tied, hasher, k=2, ties=True) == 1.0
    with pytest.raises(ValueError, match="multiple of 8"):
        CodeHasher(codebook, 1, "onehot")


def test_default_hashing_is_16_bit_signatures(slices):
    torch.manual_seed(6)
    enc = CodeEncoder(DecompositionNet(TINY))
    codes = enc.encode(slices.images[:6])
    assert codes.normal_nbits == codes.abnormal_nbits == TINY.grid**2 * 16
    table = enc.normal_hasher.table
    expected = enc.normal_hasher.table[codes.normal_indices.reshape(6, -1)].reshape(6, -1)
    np.testing.assert_array_equal(hashindex.unpack_bits(codes.normal_bits, TINY.grid**2 * 16), expected)
    assert table.shape == (TINY.codebook_size, 16)


def test_data_and_hashindex_imports_do_not_load_torch(tmp_path):
    code = "import sys, hashindex, hashindex.encoder.data; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # not the source tree


def test_cli_config_names_are_the_configs():
    from hashindex.encoder.cli import CONFIG_NAMES  # kept apart so that the CLI loads without torch

    assert set(CONFIG_NAMES) == set(CONFIGS) == set(TRAINING)


def test_paper_config_is_the_papers():
    cfg = CONFIGS["paper"]
    assert (cfg.image_size, cfg.filters, cfg.codebook_size, cfg.code_dim) == (256, (32, 64, 128, 128, 128, 128), 512, 64)
    assert (cfg.decay, cfg.commitment) == (0.99, 0.25)
    t = TRAINING["paper"]
    assert (t.w_recon, t.w_pseudo, t.w_seg, t.w_latent, t.lr, t.batch_size) == (5, 5, 5, 0.25, 1e-4, 112)
    with pytest.raises(ValueError, match="halve"):
        dataclasses.replace(cfg, image_size=100)


def test_torch_dataset(slices):
    from torch.utils.data import DataLoader

    from hashindex.encoder.dataset import SliceDataset

    ds = SliceDataset(slices)
    assert len(ds) == len(slices)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 4, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["seg"].shape == (4, 32, 32) and batch["seg"].dtype == torch.int64
    np.testing.assert_array_equal(batch["image"].numpy(), slices.images[:4])
    with pytest.raises(TypeError, match="slices"):
        SliceDataset(slices.images)


def test_train_cli_smoke_and_errors(slices, tmp_path, phantom_root, capsys):
    from hashindex.cli import main as cli

    data = tmp_path / "s64.npz"
    load_slices(phantom_root, size=64).save(data)
    out, weights = tmp_path / "m.pt", tmp_path / "w.pt"
    assert cli(["train", "--data", str(data), "--out", str(out), "--config", "small", "--epochs", "1",
                "--max-steps", "1", "--quiet", "--batch-size", "4", "--export", str(weights)]) == 0
    assert read_checkpoint(weights)["config"]["name"] == "small"
    if not torch.cuda.is_available():
        assert cli(["train", "--data", str(data), "--out", str(out), "--config", "small", "--device", "cuda",
                    "--quiet"]) == 2
        assert "device" in capsys.readouterr().err
    small = tmp_path / "s32.npz"
    slices.save(small)
    assert cli(["train", "--data", str(small), "--out", str(tmp_path / "x.pt"), "--config", "small", "--quiet"]) == 2
    assert "the model expects 64x64" in capsys.readouterr().err


def test_shipped_model_loads_and_encodes_any_subset(slices):
    from hashindex.encoder.codes import shipped_checkpoint

    path = shipped_checkpoint()
    assert path.stat().st_size <= 10 * 2**20
    enc = CodeEncoder.load()
    assert enc.cfg.name == "base" and enc.cfg.contrast_inputs and enc.image_size == 128
    x = np.zeros((3, 4, 128, 128), np.float32)
    x[:, :, 32:96, 32:96] = np.random.default_rng(0).normal(size=(3, 4, 64, 64))
    x[2, [0, 2]] = 0  # FLAIR + T1CE only, as BraTS 2013
    codes = enc.encode(x, keep_latents=True)
    assert codes.normal_bits.shape == (3, codes.normal_nbits // 8) and codes.normal_nbits == 1024
    assert enc.segment(x).shape == (3, 128, 128)
    # A slice encoded alone (a query) gets the latents it got in a batch (when it was archived) but for
    # float rounding (a few 1e-6), so that its codes agree but where a cell lies on a boundary: a
    # layout whose convolutions change more with the batch (channels-last: 2e-3, CHANGELOG) fails.
    for i in range(3):
        alone = enc.encode(x[i:i + 1], keep_latents=True)
        np.testing.assert_allclose(alone.latents[0][0], codes.latents[0][i], rtol=0, atol=1e-4)
        np.testing.assert_allclose(alone.latents[1][0], codes.latents[1][i], rtol=0, atol=1e-4)


def test_checkpoints_of_version_0_1_still_load(tmp_path):
    state = {"format": "hashindex-encoder", "version": 1, "model": DecompositionNet(TINY).state_dict(),
             # 0.1 kept training settings in the model's config
             "config": {**TINY.to_dict(), "lr": 2e-3, "batch_size": 8, "w_recon": 5.0, "w_critic": 1e-4}}
    torch.save(state, tmp_path / "old.pt")
    model = model_from_checkpoint(read_checkpoint(tmp_path / "old.pt"))
    assert model.cfg == TINY


def test_decoding_codes_gives_what_the_image_methods_give(encoder, slices):
    """evaluate_model decodes the codes it already has instead of encoding every slice again."""
    images, present = slices.images[:11], slices.contrasts[:11]  # 11: a partial last batch of 5
    codes = encoder.encode(images, present=present)
    out = encoder.decode(codes.normal_indices, codes.abnormal_indices)
    np.testing.assert_array_equal(out["segment"], encoder.segment(images, present=present))
    np.testing.assert_allclose(out["pseudo_normal"], encoder.pseudo_normal(images, present=present), atol=1e-5)
    np.testing.assert_allclose(out["reconstruct"], encoder.reconstruct(images, present=present), atol=1e-5)
    alone = encoder.decode(normal_indices=codes.normal_indices, outputs=("pseudo_normal",))
    assert set(alone) == {"pseudo_normal"}
    np.testing.assert_array_equal(alone["pseudo_normal"], out["pseudo_normal"])
    empty = encoder.decode(codes.normal_indices[:0], codes.abnormal_indices[:0])
    assert empty["segment"].shape == (0, 32, 32) and empty["reconstruct"].shape == (0, 4, 32, 32)


@pytest.mark.parametrize("kwargs,match", [
    ({"outputs": ("segment",)}, r"abnormal_indices: required"),
    ({"normal_indices": np.zeros((2, 3, 3), np.int64), "outputs": ("pseudo_normal",)},
     r"normal_indices: expected integer index maps of shape \(N, 8, 8\)"),
    ({"abnormal_indices": np.full((2, 8, 8), 16), "outputs": ("segment",)}, r"codebook indices in \[0, 16\)"),
    ({"abnormal_indices": np.zeros((2, 8, 8), np.float32), "outputs": ("segment",)}, r"integer index maps"),
    ({"normal_indices": np.zeros((2, 8, 8), int), "abnormal_indices": np.zeros((3, 8, 8), int)},
     r"the same number of maps, got 2 and 3"),
    ({"normal_indices": np.zeros((2, 8, 8), int), "outputs": ("latents",)}, r"outputs: expected a non-empty subset"),
])
def test_decode_rejects_bad_maps(encoder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        encoder.decode(**kwargs)


def test_labels_of_is_argmax_with_ties_to_the_first_class():
    from hashindex.encoder.codes import labels_of

    logits = torch.from_numpy(np.random.default_rng(3).integers(-2, 3, (6, 4, 9, 7)).astype(np.float32))  # many ties
    np.testing.assert_array_equal(labels_of(logits).numpy(), logits.argmax(1).numpy())
    assert labels_of(logits).dtype == torch.uint8
