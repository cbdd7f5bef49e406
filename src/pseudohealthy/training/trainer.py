"""One training loop for both models: AdamW, EMA weights, optional bf16 autocast, CSV metrics,
atomic checkpoints every N steps and exact resume.

Randomness is drawn per step from (seed, step), so a run resumed from step k continues exactly
as the uninterrupted run would (on CPU, same config). Under ``torchrun`` every rank draws the same
global batch, noise and timesteps and trains on its share (DDP averages the gradients); only rank 0
writes files.
"""

from __future__ import annotations

import copy
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pseudohealthy import workdir
from pseudohealthy.baselines.synthetic_anomalies import add_anomalies, anomaly_fields
from pseudohealthy.config import Config, save_config
from pseudohealthy.config.schema import TrainConfig
from pseudohealthy.data.slices import SliceCache, open_slice_cache
from pseudohealthy.diffusion.schedule import NoiseSchedule
from pseudohealthy.diffusion.simplex import simplex_noise
from pseudohealthy.errors import UserError
from pseudohealthy.models.checkpoint import load_checkpoint, save_checkpoint
from pseudohealthy.models.networks import build_model, classifier_classes, translator_input
from pseudohealthy.models.trained import model_dir, model_name, network_signature
from pseudohealthy.training.distributed import Rank, barrier, init_distributed, mean_over_ranks

KINDS = ("translator", "classifier", "autoencoder")


def coarse_noise(gen: torch.Generator, n: int, size: int, cells: int, std: float) -> torch.Tensor:
    """The denoising autoencoder's corruption (Kascenas et al. 2022): Gaussian noise drawn on a coarse
    ``cells`` x ``cells`` grid and upsampled to the slice, so it hides structures, not just pixels."""
    coarse = torch.randn((n, 1, cells, cells), generator=gen) * std
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _step_rng(seed: int, step: int, salt: int) -> tuple[np.random.Generator, torch.Generator]:
    """Generators that depend only on (seed, step): what makes resuming exact."""
    rng = np.random.default_rng([seed, step + 1, salt])
    return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))


@dataclass
class Batch:
    flair: torch.Tensor  # (B, 1, H, W)
    t1: torch.Tensor
    labels: torch.Tensor  # (B,)


@dataclass
class Draw:
    """The random part of one step for a global batch; ``take`` gives a rank its share."""

    t: torch.Tensor
    noise: torch.Tensor
    anomalies: torch.Tensor | None = None  # additive fields for the conditioning image

    def take(self, share) -> Draw:
        return Draw(self.t[share], self.noise[share], None if self.anomalies is None else self.anomalies[share])


def _batch(cache: SliceCache, rows: np.ndarray, labels: np.ndarray, device: torch.device) -> Batch:
    rows = np.sort(rows)  # memmap reads in order
    flair = torch.from_numpy(np.asarray(cache.arrays["flair"][rows], np.float32)).unsqueeze(1)
    t1 = torch.from_numpy(np.asarray(cache.arrays["t1"][rows], np.float32)).unsqueeze(1)
    return Batch(flair.to(device), t1.to(device), torch.from_numpy(labels[rows]).to(device))


def _class_balanced(rng: np.random.Generator, rows: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Pick a class uniformly among those present, then a slice of that class."""
    classes = np.unique(labels[rows])
    picked = rng.choice(classes, size=n)
    return np.array([rng.choice(rows[labels[rows] == c]) for c in picked])


class _Task:
    """What differs between the models: the network, the loss, the noise and the batch sampling."""

    def __init__(self, kind: str, cfg: Config, cache: SliceCache):
        self.kind, self.cfg = kind, cfg
        self.schedule = NoiseSchedule.from_config(cfg.diffusion)
        # The autoencoder baseline trains on the translator's budget (same network widths).
        self.train: TrainConfig = cfg.train_classifier if kind == "classifier" else cfg.train_translator
        self.max_t = min(self.train.max_timestep or cfg.diffusion.timesteps, cfg.diffusion.timesteps)
        labels = cache.labels
        if kind == "classifier" and classifier_classes(cfg) == 2:
            labels = (labels > 0).astype(np.int64)
        self.labels = labels

    def build(self) -> torch.nn.Module:
        return build_model(self.kind, self.cfg)

    def usable(self, rows: np.ndarray) -> np.ndarray:
        """The rows this model may train on (healthy-only baselines never see a lesion slice)."""
        if self.kind != "classifier" and self.cfg.method.train_on == "healthy":
            return rows[self.labels[rows] == 0]
        return rows

    def sample_rows(self, rng: np.random.Generator, rows: np.ndarray, n: int) -> np.ndarray:
        """A global batch of slice rows, sorted (memmap reads in order; the order pairs rows with noise)."""
        if self.kind == "classifier":
            return np.sort(_class_balanced(rng, rows, self.labels, n))
        return np.sort(rng.choice(rows, size=n))

    def draw_noise(self, gen: torch.Generator, n: int) -> Draw:
        """Timesteps, noise (and synthetic anomalies) for a global batch of ``n`` slices, on the CPU so
        every device and rank agrees."""
        size, method = self.cfg.data.image_size, self.cfg.method
        if self.kind == "autoencoder":
            return Draw(torch.zeros(n, dtype=torch.long),
                        coarse_noise(gen, n, size, method.denoising_noise_cells, method.denoising_noise_std))
        t = torch.randint(1, self.max_t + 1, (n,), generator=gen)
        if self.kind == "classifier":
            return Draw(t, torch.randn((n, 1, size, size), generator=gen))
        noise = simplex_noise((n, 1, size, size), gen) if method.noise == "simplex" else \
            torch.randn((n, 1, size, size), generator=gen)
        return Draw(t, noise, anomaly_fields(gen, n, size) if method.synthetic_anomalies else None)

    def loss(self, model: torch.nn.Module, batch: Batch, draw: Draw) -> tuple[torch.Tensor, dict]:
        t, noise = draw.t.to(batch.flair.device), draw.noise.to(batch.flair.device)
        if self.kind == "autoencoder":
            return F.mse_loss(model(batch.flair + noise).float(), batch.flair), {}
        noisy = self.schedule.q_sample(batch.flair, t, noise)
        if self.kind == "translator":
            condition = batch.flair if draw.anomalies is None else add_anomalies(batch.flair, draw.anomalies)
            pred = model(translator_input(noisy, batch.t1, condition, self.cfg), t, class_labels=batch.labels)
            return F.mse_loss(pred.float(), noise), {}
        logits = model(noisy, t).float()
        return F.cross_entropy(logits, batch.labels), {"acc": (logits.argmax(1) == batch.labels).float().mean().item()}


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


@torch.no_grad()
def validate(task: _Task, model: torch.nn.Module, cache: SliceCache, device: torch.device, seed: int,
             max_slices: int = 256) -> dict:
    """Loss (and accuracy, lesion-vs-normal AUROC for the classifier) on validation slices, fixed noise."""
    rows = task.usable(cache.rows("val"))
    if len(rows) == 0:
        return {}
    rng, gen = _step_rng(seed, -1, 7)
    if len(rows) > max_slices:
        rows = np.sort(rng.choice(rows, size=max_slices, replace=False))
    model.eval()
    losses, scores, labels, correct = [], [], [], 0
    for start in range(0, len(rows), 32):
        batch = _batch(cache, rows[start:start + 32], task.labels, device)
        if task.kind != "classifier":
            loss, _ = task.loss(model, batch, task.draw_noise(gen, len(batch.labels)))
            losses.append(loss.item() * len(batch.labels))
        else:
            t = torch.randint(1, task.max_t + 1, (len(batch.labels),), generator=gen).to(device)
            noisy = task.schedule.q_sample(batch.flair, t, torch.randn(batch.flair.shape, generator=gen).to(device))
            logits = model(noisy, t).float()
            losses.append(F.cross_entropy(logits, batch.labels, reduction="sum").item())
            correct += int((logits.argmax(1) == batch.labels).sum())
            scores.append(1 - torch.softmax(logits, 1)[:, 0].cpu().numpy())
            labels.append((batch.labels > 0).cpu().numpy())
    model.train()
    out = {"val_loss": sum(losses) / len(rows)}
    if task.kind == "classifier":
        from sklearn.metrics import roc_auc_score

        y, s = np.concatenate(labels), np.concatenate(scores)
        out["val_acc"] = correct / len(rows)
        out["val_auroc_lesion"] = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")
    return out


def train(work_dir: Path, cfg: Config, kind: str, resume: bool = False, device: str = "cpu",
          iterations: int | None = None, on_step: Callable[[int, int, float], None] | None = None) -> dict:
    """Train ``kind`` on WORK_DIR's slices; returns the final metrics. ``iterations`` overrides the preset."""
    if kind not in KINDS:
        raise UserError(f"--model must be one of {', '.join(KINDS)}, not '{kind}'")
    work_dir = Path(work_dir)
    if not workdir.slice_index_file(workdir.slices_dir(work_dir)).is_file():
        raise UserError(f"{work_dir}: no prepared slices; run `pseudohealthy prepare BIDS_DIR {work_dir}` first")
    cache = open_slice_cache(work_dir)
    task = _Task(kind, cfg, cache)
    rows = task.usable(cache.rows("train"))
    if len(rows) == 0:
        raise UserError(f"{work_dir}: no training slices for the {model_name(kind, cfg)} model (every subject is "
                        "in val or test, or no healthy slice)")
    total = iterations or task.train.iterations
    rank, dev = init_distributed(device)
    if task.train.batch_size % rank.world:
        raise UserError(f"batch_size {task.train.batch_size} is not divisible by the {rank.world} processes; "
                        "choose a batch size that is a multiple of --nproc_per_node x nodes")
    out_dir = model_dir(work_dir, kind, cfg)
    ckpt_path = workdir.checkpoint_file(out_dir)
    signature = network_signature(cfg, kind)

    torch.manual_seed(cfg.seed)
    model = task.build().to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=task.train.lr, weight_decay=task.train.weight_decay)
    step = 0
    metrics: dict = {}
    if ckpt_path.exists():
        if not resume:
            raise UserError(f"{ckpt_path} exists; pass --resume to continue it, or use a new WORK_DIR")
        ckpt = load_checkpoint(ckpt_path, expect_kind=kind, expect_preset=signature["network"])
        if any(ckpt["signature"].get(key, value) != value for key, value in signature.items()):
            raise UserError(f"{ckpt_path}: made with another config (method or image size); use a new WORK_DIR")
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        metrics = dict(ckpt.get("metrics", {}))
    metrics_path = workdir.metrics_file(out_dir)
    if rank.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, workdir.config_file(out_dir))
        _truncate_metrics(metrics_path, step)
    net = _parallel(model, rank, dev)

    def checkpoint(metrics: dict) -> None:
        save_checkpoint(ckpt_path, kind=kind, preset=cfg.name, network=signature["network"], signature=signature,
                        step=step, model=model.state_dict(), ema=ema.state_dict(), optimizer=opt.state_dict(),
                        metrics=metrics)

    model.train()
    window: list[float] = []
    start = time.perf_counter()
    while step < total:
        rng, gen = _step_rng(cfg.seed, step, 0)
        torch.manual_seed(int(rng.integers(2**62)))  # dropout inside MONAI's networks uses the global RNG
        picked = task.sample_rows(rng, rows, task.train.batch_size)
        draw = task.draw_noise(gen, len(picked))
        share = rank.shard(len(picked))
        batch = _batch(cache, picked[share], task.labels, dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=task.train.bf16):
            loss, extra = task.loss(net, batch, draw.take(share))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # EMA warm-up: early averages would otherwise be dominated by the (zero-output) initial weights.
        _ema_update(ema, model, min(task.train.ema_decay, (1 + step) / (10 + step)))
        step += 1
        loss_value = mean_over_ranks(loss, rank)
        window.append(loss_value)
        row = {"step": step, "loss": loss_value, "seconds": round(time.perf_counter() - start, 2), **extra}
        if rank.is_main and (step % task.train.checkpoint_every == 0 or step == total):
            row.update(validate(task, ema, cache, dev, cfg.seed))
            metrics = row
            _append_metrics(metrics_path, row)
            checkpoint(metrics)
        if on_step and rank.is_main:
            on_step(step, total, float(np.mean(window[-20:])))
    barrier(rank)
    return metrics


def _parallel(model: torch.nn.Module, rank: Rank, device: torch.device) -> torch.nn.Module:
    """The module the loop calls: ``model`` itself, or a DDP wrapper sharing its parameters."""
    if rank.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


_METRIC_FIELDS = ["step", "loss", "acc", "val_loss", "val_acc", "val_auroc_lesion", "seconds"]


def _append_metrics(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_METRIC_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
    path.unlink()
    for r in rows:
        _append_metrics(path, r)
