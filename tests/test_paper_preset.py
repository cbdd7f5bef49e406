"""The paper-sized preset builds and takes one training and one sampling step on CPU."""

from __future__ import annotations

import resource

import pytest
import torch
import torch.nn.functional as F

from pseudohealthy.config import load_config
from pseudohealthy.diffusion.ddim import ddim_decode, ddim_encode, timestep_ladder
from pseudohealthy.diffusion.guidance import guided_eps
from pseudohealthy.diffusion.schedule import NoiseSchedule
from pseudohealthy.models.networks import build_classifier, build_translator, translator_input


@pytest.mark.slow
def test_paper_preset_one_training_and_one_sampling_step():
    cfg = load_config("paper")
    size = cfg.data.image_size
    torch.manual_seed(0)
    translator, classifier = build_translator(cfg), build_classifier(cfg)
    assert sum(p.numel() for p in translator.parameters()) > 50e6  # base 96, multipliers 1,1,2,2,4,4
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    flair, t1 = torch.rand(2, 1, size, size) * 2 - 1, torch.rand(2, 1, size, size) * 2 - 1
    t = torch.tensor([10, 500])
    noise = torch.randn_like(flair)
    opt = torch.optim.AdamW(translator.parameters(), lr=cfg.train_translator.lr)
    loss = F.mse_loss(translator(translator_input(schedule.q_sample(flair, t, noise), t1, flair, cfg), t,
                                 class_labels=torch.tensor([0, 1])), noise)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    translator.eval()
    classifier.eval()

    def eps(x, tt):
        return translator(translator_input(x, t1[:1], flair[:1], cfg), tt, class_labels=torch.zeros(1, dtype=torch.long))

    ladder = timestep_ladder(cfg.diffusion.noise_level, 1)  # one encode and one guided decode step
    with torch.no_grad():
        top = ddim_encode(flair[:1], eps, schedule, ladder)
        out = ddim_decode(top, guided_eps(eps, classifier, schedule, cfg.diffusion.guidance_scale), schedule, ladder)
    assert out.shape == (1, 1, size, size) and torch.isfinite(out).all()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"paper preset on CPU: peak RSS {peak_gb:.1f} GB")
    assert peak_gb < 20
