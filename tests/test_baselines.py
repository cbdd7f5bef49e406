"""The baselines' own pieces: simplex noise, coarse noise, synthetic anomalies, the control z-score,
and which model each method of the benchmark trains (variants never overwrite the method's models)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from pseudohealthy.baselines.control_zscore import control_zscore, fit_control_stats
from pseudohealthy.baselines.synthetic_anomalies import add_anomalies, anomaly_fields
from pseudohealthy.config import load_config
from pseudohealthy.diffusion.simplex import _simplex, simplex_noise
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.methods import METHODS, method_config, select_methods
from pseudohealthy.models.trained import model_name, required_models
from pseudohealthy.training.trainer import coarse_noise


def test_simplex_is_zero_on_its_lattice_and_bounded():
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    # Lattice vertices (skewed grid): the own corner contributes 0 and the others are beyond the
    # kernel radius (distance² 2/3 > 0.5), so the noise is exactly 0 there.
    i, j = torch.meshgrid(torch.arange(-3.0, 4.0), torch.arange(-3.0, 4.0), indexing="ij")
    g2 = (3 - 3 ** 0.5) / 6
    t = (i + j) * g2
    assert torch.allclose(_simplex(i - t, j - t, perm), torch.zeros_like(i), atol=1e-6)
    points = torch.rand(20000, 2, generator=torch.Generator().manual_seed(1)) * 40
    values = _simplex(points[:, 0], points[:, 1], perm)
    assert values.abs().max() < 1 and values.std() > 0.1


def test_simplex_noise_is_standardised_smooth_and_seeded():
    a = simplex_noise((4, 1, 64, 64), torch.Generator().manual_seed(3))
    b = simplex_noise((4, 1, 64, 64), torch.Generator().manual_seed(3))
    c = simplex_noise((4, 1, 64, 64), torch.Generator().manual_seed(4))
    assert a.shape == (4, 1, 64, 64) and torch.equal(a, b) and not torch.equal(a, c)
    flat = a.reshape(4, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(4), atol=1e-4, rtol=0)

    def lag1(x):
        return torch.corrcoef(torch.stack([x[..., :-1].flatten(), x[..., 1:].flatten()]))[0, 1]

    assert lag1(a) > 0.3  # structured: neighbours correlate, unlike Gaussian noise
    assert abs(lag1(torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(0)))) < 0.05


def test_coarse_noise_is_smooth_with_the_given_std():
    noise = coarse_noise(torch.Generator().manual_seed(0), 64, 64, cells=8, std=0.2)
    assert noise.shape == (64, 1, 64, 64)
    assert 0.12 < float(noise.std()) < 0.22  # bilinear upsampling keeps most of the variance
    assert float((noise[..., 1:] - noise[..., :-1]).abs().mean()) < 0.05  # neighbouring pixels nearly equal


def test_anomaly_fields_and_pasting_into_the_brain():
    fields = anomaly_fields(torch.Generator().manual_seed(0), 400, 32)
    present = fields.flatten(1).abs().amax(1) > 0.01
    assert 0.4 < present.float().mean() < 0.6  # probability 0.5
    assert fields.abs().max() <= 1.0 and fields[present].abs().amax() >= 0.29
    flair = torch.full((1, 1, 8, 8), -1.0)
    flair[..., 2:6, 2:6] = 0.0
    pasted = add_anomalies(flair, torch.full((1, 1, 8, 8), 0.5))
    assert torch.equal(pasted[flair == -1], flair[flair == -1])  # background untouched
    assert torch.allclose(pasted[flair == 0], torch.full((16,), 0.5))


@pytest.mark.parametrize("name, models", [
    ("full", ["translator-t500", "classifier"]),  # the quick preset trains the method on t <= 500
    ("no_t1", ["translator-none-t500", "classifier"]),
    ("no_histmatch", ["translator-t500", "classifier"]),
    ("no_guidance", ["translator-t500"]),
    ("binary_guidance", ["translator-t500", "classifier-binary"]),
    ("no_normative", ["translator-t500", "classifier"]),  # the normative residual needs no network of its own
    ("denoising_ae", ["autoencoder-healthy"]),
    ("anoddpm", ["translator-none-simplex-healthy"]),  # baselines train on every noise level, as published
    ("wolleb", ["translator-none", "classifier-binary"]),
    ("wolleb_x", ["translator-none", "classifier-binary"]),  # the same networks, guided in x-space
    ("imgcond", ["translator-flair-synthetic-healthy"]),
    ("control_zscore", []),
    ("flair_zscore", []),
    ("exclude_csf", ["translator-t500", "classifier"]),  # a post-processing: the method's own networks
    ("control_zscore_nocsf", []),
])
def test_each_method_names_the_models_it_shares(tmp_path, name, models):
    from pseudohealthy.config import save_config

    save_config(load_config("quick"), tmp_path / "config.yaml")
    cfg = method_config(tmp_path, METHODS[name])
    assert [model_name(kind, cfg) for kind in required_models(cfg)] == models


def test_baselines_run_as_published_and_our_rows_keep_our_defaults(tmp_path):
    """Reinsertion, the t <= 500 training range and the normative residual are ours (E4, E6, E7): no baseline
    or reference gets them, every ablation of ours keeps them but the one that removes it."""
    from pseudohealthy.config import save_config

    save_config(load_config("quick"), tmp_path / "config.yaml")
    for spec in METHODS.values():
        cfg = method_config(tmp_path, spec)
        ours = spec.role not in ("baseline", "reference")
        assert cfg.method.normative is (ours and spec.name != "no_normative"), spec.name
        # scoring without the CSF is an option (E8), given to ours and to both references alike
        assert cfg.method.exclude_csf is (spec.name in ("exclude_csf", "control_zscore_nocsf", "flair_zscore_nocsf"))
        if cfg.method.detector != "diffusion":
            continue
        assert cfg.diffusion.reinsert is ours, spec.name
        assert (cfg.train_translator.max_timestep == 500) is ours, spec.name


def test_every_grid_point_of_every_method_is_a_valid_config_and_models_are_named_by_their_knobs(tmp_path):
    from pseudohealthy.config import save_config, with_overrides
    from pseudohealthy.evaluation.tune import parse_grid

    save_config(load_config("quick"), tmp_path / "config.yaml")
    for spec in METHODS.values():
        assert spec.grid and spec.grid_source, spec.name  # every method is swept on validation, its source said
        names = {tuple(model_name(kind, cfg) for kind in required_models(cfg))
                 for cfg in (with_overrides(method_config(tmp_path, spec), point, "grid")
                             for point in parse_grid(list(spec.grid)))}
        # only the autoencoder's grid is over training knobs: one model per point there, one set elsewhere
        assert len(names) == (4 if spec.name == "denoising_ae" else 1), spec.name
    assert "100" in METHODS["wolleb"].grid[1] and "500" in METHODS["wolleb"].grid[0]  # the authors' s and L


def test_method_selection_and_user_settings(tmp_path):
    from pseudohealthy.config import save_config

    assert [m.name for m in select_methods("all")] == list(METHODS)
    assert [m.name for m in select_methods("wolleb, full,wolleb")] == ["wolleb", "full"]
    with pytest.raises(UserError, match="unknown method"):
        select_methods("full,nonsense")
    save_config(load_config("quick"), tmp_path / "config.yaml")
    cfg = method_config(tmp_path, METHODS["anoddpm"], {"diffusion": {"steps": 5}, "method": {"smoothing_mm": 0}})
    assert (cfg.diffusion.steps, cfg.diffusion.noise_level, cfg.method.noise, cfg.method.smoothing_mm) == \
        (5, 250, "simplex", 0)
    # not mutated by the user's settings
    assert METHODS["anoddpm"].overrides["diffusion"] == {"noise_level": 250, "eta": 1.0, "reinsert": False}


def _write_subject(work, pid, flair):
    subject = work / "subjects" / pid
    subject.mkdir(parents=True)
    for name, data in (("flair", flair), ("brain", np.ones_like(flair))):
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), subject / f"{name}.nii.gz")


def test_control_zscore_against_hand_computed_values(tmp_path):
    shape = (2, 2, 1)
    values = {"sub-01": [0.0, 1.0, 2.0, 2.0], "sub-02": [2.0, 1.0, 2.0, 2.0], "sub-03": [4.0, 1.0, 2.0, 2.0]}
    for pid, v in values.items():
        _write_subject(tmp_path, pid, np.array(v).reshape(shape))
    (tmp_path / "splits.tsv").write_text("participant_id\tgroup\trole\nsub-01\thc\ttrain\nsub-02\thc\ttrain\n"
                                         "sub-03\thc\ttrain\nsub-04\tfcd\ttrain\nsub-05\thc\ttest\n")
    stats = fit_control_stats(tmp_path)
    assert stats.participants == ["sub-01", "sub-02", "sub-03"]
    # voxel 0: mean 2, sample std 2; voxels 1-3: std 0, floored at the median std (0) -> at least 1e-6,
    # so use a FLAIR equal to the mean there.
    np.testing.assert_allclose(stats.mean.ravel(), [2.0, 1.0, 2.0, 2.0])
    assert stats.std.ravel()[0] == pytest.approx(2.0)
    z = control_zscore(np.array([5.0, 1.0, 2.0, 2.0]).reshape(shape), stats)
    np.testing.assert_allclose(z.ravel(), [1.5, 0.0, 0.0, 0.0])
    with pytest.raises(UserError, match="grid"):
        control_zscore(np.zeros((3, 2, 1)), stats)


def test_control_zscore_floors_the_std_at_its_median(tmp_path):
    shape = (3, 1, 1)
    for pid, v in {"sub-01": [0.0, 0.0, 5.0], "sub-02": [1.0, 2.0, 5.0]}.items():
        _write_subject(tmp_path, pid, np.array(v).reshape(shape))
    (tmp_path / "splits.tsv").write_text("participant_id\tgroup\trole\nsub-01\thc\ttrain\nsub-02\thc\ttrain\n")
    stats = fit_control_stats(tmp_path)
    # sample stds: 0.707, 1.414, 0 -> median 0.707; the constant voxel gets 0.707, not 0
    np.testing.assert_allclose(stats.std.ravel(), [2 ** -0.5, 2 ** 0.5, 2 ** -0.5], rtol=1e-6)


def test_control_zscore_needs_two_training_controls(tmp_path):
    (tmp_path / "splits.tsv").write_text("participant_id\tgroup\trole\nsub-01\thc\ttrain\nsub-02\tfcd\ttrain\n")
    with pytest.raises(UserError, match="at least 2 training controls"):
        fit_control_stats(tmp_path)


def test_anoddpm_and_imgcond_sampling_paths_run_and_are_seeded():
    """Forward noising with simplex noise (AnoDDPM) and FLAIR conditioning (ImgCondDDPM) through the
    shared sampler; the same seed gives the same image, and bf16 'auto' resolves to a real dtype."""
    from pseudohealthy.detect.synthesis import inference_dtype, synthesize
    from pseudohealthy.models.networks import build_model
    from pseudohealthy.models.trained import Models

    rng = np.random.default_rng(0)
    flair = rng.uniform(-1, 1, (64, 64, 3)).astype(np.float32)
    brain = np.ones(flair.shape, bool)
    for method in ({"condition": "none", "noise": "simplex", "encode": "noise", "guidance": "none"},
                   {"condition": "flair", "synthetic_anomalies": True, "encode": "noise", "guidance": "none"}):
        diffusion = {"steps": 2, "noise_level": 50, "samples": 1, "reinsert": False}  # forward noising: no path
        cfg = load_config("quick", overrides={"method": method, "diffusion": diffusion})
        torch.manual_seed(0)
        models = Models(translator=build_model("translator", cfg))
        a = synthesize(flair, flair, brain, models, cfg).samples
        b = synthesize(flair, flair, brain, models, cfg).samples
        c = synthesize(flair, flair, brain, models, cfg, seed=5).samples
        assert a.shape == (1, *flair.shape) and np.array_equal(a, b) and not np.array_equal(a, c)
        assert not np.allclose(a[0], flair, atol=1e-3)  # fresh noise at L: not the input back
    assert inference_dtype("float32", torch.device("cpu")) is torch.float32
    assert inference_dtype("auto", torch.device("cpu")) in (torch.bfloat16, torch.float32)


def test_flair_zscore_reference_is_the_positive_deviation_from_the_subject_mean(tmp_path):
    """No model, no controls: with no post-processing the map is max(FLAIR - mean brain FLAIR, 0) in the brain."""
    import nibabel as nib

    from pseudohealthy.detect.pipeline import analyse

    shape = (6, 6, 3)
    brain = np.zeros(shape, np.uint8)
    brain[1:5, 1:5, :] = 1
    flair = np.where(brain, 0.2, -1.0).astype(np.float32)
    flair[2, 2, 1] = 1.0  # one bright voxel
    for name, data in (("flair", flair), ("t1", flair), ("brain", brain), ("lesion", np.zeros(shape, np.uint8))):
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"{name}.nii.gz")
    cfg = load_config("quick", overrides={"method": {"detector": "flair_zscore", "histogram_matching": False,
                                                      "smoothing_mm": 0, "slice_standardise": False,
                                                      "normative": False}})
    maps = analyse(tmp_path, None, cfg)
    mean = (0.2 * 47 + 1.0) / 48  # 48 brain voxels, one of them bright
    expected = np.where(brain > 0, np.clip(flair - mean, 0, None), 0)
    np.testing.assert_allclose(maps.anomaly, expected, atol=1e-6)
