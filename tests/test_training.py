"""Training loop: it learns, checkpoints load safely, and resuming is exact."""

from __future__ import annotations

import shutil

import pytest
import torch

from pseudohealthy.config import load_config
from pseudohealthy.errors import UserError
from pseudohealthy.models.checkpoint import load_checkpoint
from pseudohealthy.models.trained import load_trained, model_dir
from pseudohealthy.training.trainer import train

TINY = {"train_translator": {"batch_size": 4, "checkpoint_every": 2},
        "train_classifier": {"batch_size": 4, "checkpoint_every": 2}}


@pytest.fixture()
def work(tiny_prepared, tmp_path):
    dest = tmp_path / "work"
    shutil.copytree(tiny_prepared, dest)
    return dest


@pytest.mark.parametrize("kind", ["translator", "classifier"])
def test_resume_reaches_the_same_weights(work, tmp_path, kind):
    cfg = load_config("quick", overrides=TINY)
    other = tmp_path / "other"
    shutil.copytree(work, other)
    train(work, cfg, kind, iterations=4)
    train(other, cfg, kind, iterations=2)
    train(other, cfg, kind, iterations=4, resume=True)
    a = torch.load(model_dir(work, kind, cfg) / "checkpoint.pt", weights_only=True)
    b = torch.load(model_dir(other, kind, cfg) / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    assert (model_dir(work, kind, cfg) / "config.yaml").is_file()
    lines = (model_dir(other, kind, cfg) / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["2", "4"]  # no duplicated rows after resume


def test_the_noise_levels_trained_on_bound_the_draws_and_name_the_model():
    from types import SimpleNamespace

    import numpy as np

    from pseudohealthy.models.trained import model_name
    from pseudohealthy.training.trainer import _Task

    def drawn_t(cfg):
        task = _Task("translator", cfg, SimpleNamespace(labels=np.zeros(4, np.int64)))
        return task.draw_noise(torch.Generator().manual_seed(0), 4000).t

    focused = load_config("quick", overrides={"train_translator": {"max_timestep": 300}})
    t = drawn_t(focused)
    assert int(t.min()) == 1 and int(t.max()) == 300
    uniform = load_config("quick", overrides={"train_translator": {"max_timestep": None}})
    assert int(drawn_t(uniform).max()) > 900
    assert model_name("translator", focused) == "translator-t300" and model_name("classifier", focused) == "classifier"
    assert model_name("translator", uniform) == "translator"  # a uniform model is never trained over
    every = load_config("quick", overrides={"train_translator": {"max_timestep": 1000}})
    assert model_name("translator", every) == "translator"  # [1, T] is all of them
    assert model_name("classifier", load_config("quick", overrides={"train_classifier": {"max_timestep": 300}})) \
        == "classifier-t300"


def test_existing_checkpoint_needs_resume_and_matching_preset(work):
    cfg = load_config("quick", overrides=TINY)
    train(work, cfg, "classifier", iterations=2)
    with pytest.raises(UserError, match="--resume"):
        train(work, cfg, "classifier", iterations=2)
    other = load_config("quick", overrides={**TINY, "classifier": {"channels": [32, 32, 32]}})
    with pytest.raises(UserError, match="another network configuration"):
        train(work, other, "classifier", iterations=4, resume=True)


def test_tampered_or_foreign_checkpoints_are_refused(work, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(UserError, match="not a pseudohealthy checkpoint"):
        load_checkpoint(bad)


def test_translator_loss_goes_down_and_weights_load(work):
    cfg = load_config("quick", overrides={"train_translator": {"batch_size": 8, "checkpoint_every": 30}})
    losses = []
    train(work, cfg, "translator", iterations=30, on_step=lambda step, total, loss: losses.append(loss))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    model = load_trained(work, cfg, "translator")
    out = model(torch.zeros(1, 2, 64, 64), torch.tensor([10]), class_labels=torch.tensor([0]))
    assert out.abs().sum() > 0  # an untrained MONAI UNet outputs exactly 0 (zero-initialised last layer)


@pytest.mark.parametrize("size", [64, 96, 100])
def test_the_pooled_classifier_head_fits_every_slice_size(size):
    """The pooling head undoes the encoder's flatten with the map side it computes (ceil-halving at every
    level, 100 -> 7); a wrong side fails in Unflatten. Its head no longer grows with the slice size."""
    import torch

    from pseudohealthy.models.networks import build_classifier

    sizes = {}
    for head in ("flatten", "pool"):
        cfg = load_config("quick", overrides={"data": {"image_size": size}, "classifier": {"head": head}})
        net = build_classifier(cfg).eval()
        assert net(torch.randn(2, 1, size, size), torch.tensor([3, 300])).shape == (2, 9)
        sizes[head] = sum(p.numel() for p in net.out.parameters())
    assert sizes["pool"] == 64 * 512 + 512 + 512 * 9 + 9  # Linear(C=64, 512) + Linear(512, 9)
    assert sizes["flatten"] > sizes["pool"]
