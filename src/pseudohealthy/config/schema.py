"""Configuration schema. Unknown keys are errors, so a typo never silently falls back to a default."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Model-ready data: template grid, slices and intensity normalisation.

    Inside the brain the [clip_low, clip_high] percentiles are mapped linearly to [-1, 1]; darker voxels
    are -1, brighter ones follow the same line up to ``intensity_max``; background is -1. This is the
    network's input range everywhere.
    """

    template_voxel_mm: float = Field(gt=0, description="isotropic voxel size of the template grid")
    image_size: int = Field(ge=32, description="axial slice size in pixels (square)")
    clip_low: float = Field(default=0.5, ge=0, lt=50)
    clip_high: float = Field(default=99.5, gt=50, le=100)
    intensity_max: float = Field(
        default=1.0, ge=1.0, le=10.0,
        description="ceiling of the normalised range: 1 clips at the clip_high percentile (the lesion's contrast "
                    "above it is lost); larger keeps the bright tail, e.g. 3 keeps voxels up to twice the "
                    "[clip_low, clip_high] span above clip_high")
    min_brain_fraction: float = Field(default=0.05, ge=0, le=1, description="slices with less brain are dropped")
    nonlinear_registration: bool = Field(default=False, description="B-spline after the affine T1 -> MNI step")
    brain_mask: Literal["auto", "template", "nonzero", "deepbet"] = Field(
        default="auto", description="template: the MNI mask after the affine registration (ignores provided "
                                    "masks); nonzero: input is skull-stripped; deepbet: a learned brain "
                                    "extraction of the T1w (Fisch et al. 2024; weights inside the deepbet wheel); "
                                    "auto: a provided sub-X_*desc-brain_mask on the FLAIR grid, else nonzero "
                                    "when the input looks skull-stripped, else deepbet")
    val_patient_fraction: float = Field(default=0.2, ge=0, lt=1)
    val_control_fraction: float = Field(default=0.15, ge=0, lt=1)
    test_control_fraction: float = Field(default=0.15, ge=0, lt=1)

    def preprocessing(self) -> dict:
        """The settings that shape a model's input (everything but how subjects are split into roles):
        a model fits a work folder when these agree."""
        return self.model_dump(exclude={"val_patient_fraction", "val_control_fraction", "test_control_fraction"})


class DiffusionConfig(_Strict):
    """Noise schedule and the DDIM encode/decode used at inference (METHOD.md §2–3)."""

    timesteps: int = Field(default=1000, ge=10)
    beta_start: float = Field(default=0.0015, gt=0, lt=1)
    beta_end: float = Field(default=0.0155, gt=0, lt=1)
    noise_level: int = Field(ge=1, description="L: timestep the FLAIR is inverted to")
    steps: int = Field(ge=1, description="DDIM steps between 0 and L")
    guidance_scale: float = Field(ge=0, description="s: classifier guidance toward class 0")
    guidance_form: Literal["eps", "x"] = Field(
        default="eps", description="eps: ε − s·√(1−ᾱ_t)·∇log p(y=0) (Dhariwal & Nichol; weak at small t); x: "
                                   "x += s·∇log p(y=0) after each step (the authors' code; their s = 5 in 100 "
                                   "steps)")
    eta: float = Field(default=0.0, ge=0, le=1, description="DDIM η of the decode: 0 deterministic, 1 DDPM-like")
    estimator: Literal["ddim", "one_step"] = Field(
        default="ddim", description="ddim: each draw inverts to L and decodes back (the method); one_step: each draw "
                                    "is x̂_0 predicted in one call from a fresh forward noising to L (N of them "
                                    "cost N calls instead of 2 x steps per draw)")
    reinsert: bool = Field(
        default=False, description="THOR-like (Bercea et al. 2024): while decoding, put back the inversion's own "
                                   "state where the predicted x̂_0 is close to the input, so healthy tissue stays "
                                   "while what differs is redrawn")
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="float32", description="autocast dtype of the network calls at inference (float16: CUDA only; "
                                       "auto: bfloat16 where the CPU/GPU computes it natively, else float32)")
    batch_size: int = Field(default=64, ge=1, description="rows (slices x samples) per network call at inference")
    samples: int = Field(default=1, ge=1, le=64, description="N: pseudo-healthy decodes per slice from one inversion; "
                                                            "the anomaly map is the mean of the N single-sample "
                                                            "maps, their spread the uncertainty (stochastic "
                                                            "decoding only)")

    @model_validator(mode="after")
    def _check(self) -> "DiffusionConfig":
        if self.beta_end <= self.beta_start:
            raise ValueError("beta_end must be larger than beta_start")
        if self.noise_level >= self.timesteps:
            raise ValueError("noise_level must be smaller than timesteps")
        if self.steps > self.noise_level:
            raise ValueError("steps cannot exceed noise_level")
        return self


class NetworkConfig(_Strict):
    """A MONAI diffusion UNet / encoder: channels per level and attention per level."""

    channels: list[int] = Field(min_length=2)
    attention_levels: list[bool]
    num_res_blocks: int = Field(default=1, ge=1)
    num_head_channels: int = Field(default=32, ge=1)
    head: Literal["flatten", "pool"] = Field(
        default="flatten", description="classifier only: flatten (MONAI's DiffusionModelEncoder: a dense head on "
                                       "every position of the last feature map) or pool (global average pooling "
                                       "first, so a lesion counts wherever it lies; the authors pool too)")

    @model_validator(mode="after")
    def _check(self) -> "NetworkConfig":
        if len(self.attention_levels) != len(self.channels):
            raise ValueError("attention_levels needs one entry per entry of channels")
        return self


class TrainConfig(_Strict):
    batch_size: int = Field(ge=1)
    iterations: int = Field(ge=1, description="optimizer steps (budget by iterations, not wall clock)")
    lr: float = Field(gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    checkpoint_every: int = Field(default=100, ge=1)
    bf16: bool = False
    max_timestep: int | None = Field(
        default=None, ge=1, description="train on t in [1, max_timestep] (None: T); the model's folder name carries "
                                        "it (translator-t500), and detection refuses an L above it")


class MethodConfig(_Strict):
    """What the detector does with the models; the paper's ablations switch these."""

    condition: Literal["t1", "flair", "none"] = Field(
        default="t1", description="the translator's clean conditioning image: t1 (the method), flair (image-"
                                  "conditioned DDPM, Baugh et al. 2024) or none (FLAIR-only diffusion)")
    guidance: Literal["lobe", "binary", "none"] = "lobe"
    detector: Literal["diffusion", "autoencoder", "control_zscore", "flair_zscore"] = Field(
        default="diffusion", description="what makes the pseudo-healthy image: the diffusion translator (the "
                                         "method), a denoising autoencoder (Kascenas et al. 2022), the training "
                                         "controls' voxel-wise FLAIR mean/std in template space (no learning) or "
                                         "the subject's own mean brain FLAIR (flair_zscore: no model, no controls)")
    noise: Literal["gaussian", "simplex"] = Field(
        default="gaussian", description="the translator's noise in training and sampling (simplex: AnoDDPM)")
    encode: Literal["invert", "noise"] = Field(
        default="invert", description="how the FLAIR reaches noise level L: DDIM inversion (the method) or "
                                      "forward noising with fresh noise (AnoDDPM)")
    train_on: Literal["all", "healthy"] = Field(
        default="all", description="slices the translator/autoencoder trains on: all (lesion slices carry their "
                                   "lobe label) or healthy only (label 0), as unsupervised baselines do")
    synthetic_anomalies: bool = Field(
        default=False, description="translator training: paste synthetic anomalies into the conditioning image "
                                   "(with condition: flair, the image-conditioned DDPM of Baugh et al. 2024)")
    denoising_noise_std: float = Field(default=0.2, gt=0, description="autoencoder: std of the coarse noise")
    denoising_noise_cells: int = Field(default=16, ge=2, description="autoencoder: coarse noise drawn on a "
                                                                     "cells x cells grid, upsampled to the slice")
    histogram_matching: Literal["quantile", "central", "affine", "none"] = Field(
        default="central", description="matching of each pseudo-healthy draw to the real FLAIR's histogram inside "
                                       "the brain (anomaly.maps.histogram_match): central (the default, chosen on the "
                                       "development set, docs/experiments.md E3a) or affine, fitted on the central "
                                       "98 % of the histograms where a lesion is not; quantile (the paper's, dense "
                                       "quantiles: maps what is left of the lesion onto the lesion); none; "
                                       "true/false in older configs mean quantile/none")
    anomaly: Literal["positive", "absolute", "positive_last"] = Field(
        default="positive", description="the map from the residual: positive (its positive part, then smoothing and "
                                        "slice standardisation), absolute (both signs), positive_last (smoothing and "
                                        "standardisation of the signed residual, then its positive part: the noise "
                                        "averages towards 0 instead of its positive half piling up; an option: "
                                        "docs/experiments.md E10, E11)")
    normative: bool = Field(
        default=False, description="z-score each draw's residual, voxel by voxel, against the training controls' "
                                   "residuals under the same settings (fitted when first needed, kept in "
                                   "WORK_DIR/normative/ and in exported models), before the positive part; on in the "
                                   "quick and medium presets (docs/experiments.md E7), turned off by prepare where "
                                   "fewer than 2 controls train")
    normative_draws: int = Field(
        default=1, ge=1, le=64, description="draws per training control when fitting the normative residual: each draw's "
                                     "residual is one sample of a single draw's (what detection z-scores), so N does "
                                     "not change the fit; more draws give a steadier SD at that many times the cost")
    exclude_csf: bool = Field(
        default=False, description="score only the brain without its CSF: voxels whose T1 is nearer the CSF than "
                                   "the grey-matter mean of the subject's own T1 get no score (anomaly.tissue), "
                                   "where FLAIR inflow and pulsation leave residuals no lesion makes")
    smoothing_mm: float = Field(default=0.0, ge=0, description="Gaussian σ applied to the anomaly map")
    slice_standardise: bool = Field(default=False, description="robust z-score of the map per axial slice")
    min_cluster_mm3: float = Field(default=50.0, ge=0, description="smaller clusters are not reported")
    rank_by: Literal["peak", "mean"] = "peak"
    confidence_radius_mm: float = Field(
        default=5.0, ge=0, description="a cluster's confidence looks at its voxels within this distance of its "
                                       "peak in each of the N single-sample maps")
    max_control_clusters: float | None = Field(
        default=1.0, ge=0, description="calibration: the threshold may leave validation controls at most this "
                                       "many clusters on average (null: no limit)")


    @field_validator("histogram_matching", mode="before")
    @classmethod
    def _matching_from_bool(cls, value):
        """Configs and model archives written before the modes existed say true / false."""
        return {True: "quantile", False: "none"}.get(value, value) if isinstance(value, bool) else value


class ReportConfig(_Strict):
    """What the per-subject HTML report shows."""

    clusters: int = Field(default=5, ge=1, le=50, description="clusters shown with their own three-view figure")
    dpi: int = Field(default=150, ge=72, le=600, description="resolution of the report's figures")
    candidates: int = Field(default=5, ge=0, le=50,
                            description="strongest regions below the threshold listed after the clusters (table, "
                                        "report and desc-candidates_dseg), so a reader sees where the map peaks")
    candidate_floor: float = Field(default=0.5, gt=0.0, lt=1.0,
                                   description="candidates are regions whose anomaly score exceeds this fraction "
                                               "of the threshold")


class Config(_Strict):
    """One run's full configuration; written next to every run's outputs."""

    name: str
    seed: int = 0
    data: DataConfig
    diffusion: DiffusionConfig
    translator: NetworkConfig
    classifier: NetworkConfig
    train_translator: TrainConfig
    train_classifier: TrainConfig
    method: MethodConfig = MethodConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.method.normative and self.method.detector in ("flair_zscore", "control_zscore"):
            raise ValueError(f"method.normative z-scores the residual of a pseudo-healthy image; the no-learning "
                             f"detector {self.method.detector} has none: set method.normative=false")
        if self.method.detector != "diffusion":
            return self
        if self.diffusion.reinsert and (self.method.encode != "invert" or self.diffusion.estimator != "ddim"):
            raise ValueError("diffusion.reinsert puts back the DDIM inversion's path while decoding: it needs "
                             "method.encode: invert and diffusion.estimator: ddim; set diffusion.reinsert=false")
        networks = [("translator", self.train_translator)]
        if self.method.guidance != "none":  # the classifier guides every decoding step, from L down
            networks.append(("classifier", self.train_classifier))
        for kind, train in networks:
            if train.max_timestep is not None and self.diffusion.noise_level > train.max_timestep:
                raise ValueError(f"diffusion.noise_level (L = {self.diffusion.noise_level}) is above "
                                 f"train_{kind}.max_timestep ({train.max_timestep}): the {kind} never learnt that "
                                 f"noise level; lower L or raise max_timestep (and train again)")
        return self
