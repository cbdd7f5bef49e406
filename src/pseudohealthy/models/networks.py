"""The translator ε_θ(x_t, t | T1, y) and the noise-aware classifier p_φ(y | x_t, t), built with MONAI.

Inputs are (B, C, H, W) float32 in [-1, 1] (see pseudohealthy.data.preprocess); timesteps (B,) long.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DiffusionModelUNet, UNet
from monai.networks.nets.diffusion_model_unet import DiffusionModelEncoder

from pseudohealthy.config.schema import Config, NetworkConfig
from pseudohealthy.data.labels import NUM_CLASSES


def _common(net: NetworkConfig) -> dict:
    return dict(spatial_dims=2, channels=tuple(net.channels), attention_levels=tuple(net.attention_levels),
                num_res_blocks=net.num_res_blocks, num_head_channels=net.num_head_channels,
                norm_num_groups=min(32, min(net.channels)))


def build_translator(cfg: Config) -> DiffusionModelUNet:
    """Noisy FLAIR (+ a clean conditioning image, see ``translator_input``) in, predicted noise out;
    9-class label embedding."""
    in_channels = 1 if cfg.method.condition == "none" else 2
    return DiffusionModelUNet(in_channels=in_channels, out_channels=1, num_class_embeds=NUM_CLASSES,
                              **_common(cfg.translator))


def classifier_classes(cfg: Config) -> int:
    """9 lobe classes, or 2 (normal / lesion) for the binary-guidance ablation."""
    return 2 if cfg.method.guidance == "binary" else NUM_CLASSES


def build_classifier(cfg: Config) -> DiffusionModelEncoder:
    """Noisy FLAIR in, class logits out (half a UNet with a timestep embedding and a dense head).

    MONAI's encoder flattens its last feature map into the head, so each position has weights of its
    own; with ``classifier.head: pool`` the head sees the feature map's channel means instead.
    """
    size = cfg.data.image_size
    net = DiffusionModelEncoder(in_channels=1, out_channels=classifier_classes(cfg), input_shape=(size, size),
                                **_common(cfg.classifier))
    if cfg.classifier.head == "pool":
        side = size
        for _ in cfg.classifier.channels:  # the encoder halves the map at every level (MONAI's own arithmetic)
            side = -(-side // 2)
        channels = cfg.classifier.channels[-1]
        # The encoder's forward flattens (C, H, W) before ``out``: undo that, then average over positions.
        net.out = torch.nn.Sequential(torch.nn.Unflatten(1, (channels, side, side)), torch.nn.AdaptiveAvgPool2d(1),
                                      torch.nn.Flatten(), torch.nn.Linear(channels, 512), torch.nn.ReLU(),
                                      torch.nn.Dropout(0.1), torch.nn.Linear(512, classifier_classes(cfg)))
    return net


def build_autoencoder(cfg: Config) -> UNet:
    """The denoising autoencoder baseline (Kascenas et al. 2022): a plain UNet (no timestep), FLAIR in,
    FLAIR out, with the translator's channel widths."""
    net = cfg.translator
    return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=tuple(net.channels),
                strides=(2,) * (len(net.channels) - 1), num_res_units=net.num_res_blocks, norm="instance")


def build_model(kind: str, cfg: Config) -> torch.nn.Module:
    return {"translator": build_translator, "classifier": build_classifier, "autoencoder": build_autoencoder}[kind](cfg)


def translator_input(noisy_flair: torch.Tensor, t1: torch.Tensor, flair: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The network input: noisy FLAIR, plus the clean conditioning image the config names."""
    if cfg.method.condition == "none":
        return noisy_flair
    return torch.cat([noisy_flair, t1 if cfg.method.condition == "t1" else flair], dim=1)
