"""What the paper preset costs: floating-point operations of one training step of each network and of
the network calls per detected slice, counted by PyTorch's FlopCounterMode on the real networks, plus
the seconds one training step takes here (CPU). From these, GPU hours for ds004199 follow by dividing
by a sustained throughput, which is an assumption (stated in the output), not a measurement.

Usage: python benchmarks/bench_paper_cost.py [--time-steps 1] [--slices-per-subject 150] [--parts train detect]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from common import earlier_result, provenance, write_result
from pseudohealthy.config import load_config
from pseudohealthy.diffusion.ddim import timestep_ladder
from pseudohealthy.models.networks import build_classifier, build_translator

# Sustained bf16 throughput assumed for UNet training/inference on one data-centre GPU (A100/H100
# class): 30 % of an A100's 312 TFLOP/s dense bf16 peak. Not measured here: no GPU was available.
ASSUMED_TFLOPS = 0.3 * 312


def _flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-steps", type=int, default=1, help="training steps timed per network (CPU)")
    parser.add_argument("--slices-per-subject", type=int, default=150, help="axial 1 mm slices with brain")
    parser.add_argument("--subjects", type=int, default=170, help="subjects to detect (ds004199: 85 + 85)")
    parser.add_argument("--parts", nargs="+", choices=["train", "detect"], default=["train", "detect"],
                        help="what to measure (the other part keeps its earlier result)")
    args = parser.parse_args()
    cfg = load_config("paper")
    size = cfg.data.image_size
    translator, classifier = build_translator(cfg), build_classifier(cfg)
    out: dict = earlier_result("paper_cost")
    out.update({"provenance": provenance(cfg), "assumed_sustained_tflops": ASSUMED_TFLOPS})

    def translator_step(batch: int) -> None:
        x = torch.randn(batch, 2, size, size)
        t = torch.randint(0, cfg.diffusion.timesteps, (batch,))
        labels = torch.zeros(batch, dtype=torch.long)
        F.mse_loss(translator(x, t, class_labels=labels), torch.randn(batch, 1, size, size)).backward()

    def classifier_step(batch: int) -> None:
        logits = classifier(torch.randn(batch, 1, size, size), torch.randint(0, 1000, (batch,)))
        F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long)).backward()

    def guidance_call() -> None:  # classifier gradient with respect to its input, one slice
        x = torch.randn(1, 1, size, size, requires_grad=True)
        classifier(x, torch.tensor([50])).log_softmax(-1)[:, 0].sum().backward()  # (x.grad, plus weight grads)

    def translator_call() -> None:
        with torch.no_grad():
            translator(torch.randn(1, 2, size, size), torch.tensor([50]),
                       class_labels=torch.zeros(1, dtype=torch.long))

    for name, step, batch, iterations in (
            ("translator", translator_step, cfg.train_translator.batch_size, cfg.train_translator.iterations),
            ("classifier", classifier_step, cfg.train_classifier.batch_size, cfg.train_classifier.iterations)):
        if "train" not in args.parts:
            break
        flops = _flops(lambda: step(batch))
        start = time.perf_counter()
        for _ in range(args.time_steps):
            step(batch)
        seconds = (time.perf_counter() - start) / args.time_steps
        out[f"train_{name}"] = {"batch": batch, "iterations": iterations, "tflop_per_step": flops / 1e12,
                                "cpu_seconds_per_step": round(seconds, 2),
                                "gpu_hours_estimate": flops * iterations / (ASSUMED_TFLOPS * 1e12) / 3600}
        print(name, out[f"train_{name}"], flush=True)

    if "detect" not in args.parts:
        print(write_result("paper_cost", out))
        return
    steps = len(timestep_ladder(cfg.diffusion.noise_level, cfg.diffusion.steps)) - 1
    per_translator, per_guidance = _flops(translator_call), _flops(guidance_call)
    samples = cfg.diffusion.samples
    per_slice = steps * per_translator + samples * steps * (per_translator + per_guidance)  # invert once, decode N
    per_subject = per_slice * args.slices_per_subject
    out["detect"] = {"steps": steps, "samples": samples, "slices_per_subject": args.slices_per_subject,
                     "tflop_translator_call": per_translator / 1e12, "tflop_guidance_call": per_guidance / 1e12,
                     "tflop_per_subject": per_subject / 1e12,
                     "gpu_minutes_per_subject_estimate": per_subject / (ASSUMED_TFLOPS * 1e12) / 60,
                     "gpu_hours_dataset_estimate": per_subject * args.subjects / (ASSUMED_TFLOPS * 1e12) / 3600}
    print("detect", out["detect"], flush=True)
    print(write_result("paper_cost", out))


if __name__ == "__main__":
    main()
