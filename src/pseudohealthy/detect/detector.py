"""The detector, built once: a trained model's config (its N of draws resolved), networks, calibration, card
and run fingerprint, read from a work folder or an unpacked model archive (``bundle.archive.opened_model``).

``calibrate``, ``detect`` and ``detect-pair`` build one from the model folder; ``evaluate``, ``tune`` and
``benchmark`` build one for their settings and calibrate it on the validation subjects. Every one of them
reads a model through here, so a setting has one path from the command line to the sampler: ``--samples``
is resolved into ``diffusion.samples`` here (``with_samples``) and nowhere else, and the cluster settings
of a calibrated detector are its calibration's (``clusters``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pseudohealthy import workdir
from pseudohealthy.anomaly.clusters import ClusterSettings
from pseudohealthy.config import Config, load_config, load_work_config, with_overrides
from pseudohealthy.detect.pipeline import load_models, normative_for
from pseudohealthy.detect.resume import run_key
from pseudohealthy.errors import UserError
from pseudohealthy.models.card import model_card
from pseudohealthy.models.trained import Models, load_calibration, model_dir, required_models


def with_samples(cfg: Config, samples: int | None) -> Config:
    """``cfg`` with ``diffusion.samples`` set to ``samples`` (unchanged when None): where ``--samples`` lands."""
    return cfg if samples is None else with_overrides(cfg, {"diffusion": {"samples": samples}}, "--samples")


def calibrated_samples(work_dir: Path, calibration: dict, samples: int | None = None) -> int:
    """The N the threshold was chosen for; asking detection for another N is refused (its maps are on
    another scale: a mean of more draws is smoother)."""
    calibrated = int(calibration.get("samples", 1))  # calibrations before samples existed used one draw
    if samples is not None and samples != calibrated:
        raise UserError(f"{workdir.calibration_file(work_dir)}: the threshold was chosen for --samples {calibrated}, "
                        f"not {samples}; run `pseudohealthy calibrate {work_dir} --samples {samples}` first, or drop "
                        "--samples")
    return calibrated


def _networks(root: Path, cfg: Config) -> tuple[str, ...]:
    """The model folders ``cfg``'s detector reads under ``root``: equal tuples, the same networks."""
    return tuple(str(model_dir(root, kind, cfg)) for kind in required_models(cfg))


def _reloaded(root: Path, cfg: Config, calibration: dict | None, card: dict | None, key: str | None,
              data_dir: Path | None = None) -> "Detector":
    return Detector(root, cfg, load_models(root, cfg, data_dir=data_dir), calibration, card, key, data_dir)


@dataclass(frozen=True, eq=False)
class Detector:
    """A trained model ready to run on preprocessed subjects.

    ``root``: the work folder or unpacked archive it was read from; ``cfg``: its settings, ``diffusion.samples``
    resolved; ``models``: the networks and fitted statistics ``cfg`` needs (``detect.pipeline.load_models``);
    ``calibration``: the threshold chosen for these settings and what it scored (None until chosen); ``card``
    and ``run_key``: the model card and the fingerprint that marks finished units (a stored model's only);
    ``data_dir``: the work folder whose training controls the statistics are fitted on, when not ``root``.
    Pickled (for ``detect``'s worker processes), it carries everything but the networks, which each
    process loads again from ``root``.
    """

    root: Path
    cfg: Config
    models: Models
    calibration: dict | None = None
    card: dict | None = None
    run_key: str | None = None
    data_dir: Path | None = None

    @classmethod
    def load(cls, root: Path, samples: int | None = None) -> "Detector":
        """The calibrated model in ``root`` as ``detect`` runs it: its config with the N of draws its
        threshold was chosen for (``samples``, when given, must be that N), its card (the archive's, else
        made afresh) and its run fingerprint."""
        root = Path(root)
        calibration = load_calibration(root)
        cfg = with_samples(load_work_config(root), calibrated_samples(root, calibration, samples))
        card_path = workdir.model_card_file(root)  # in exported archives; made afresh for a work folder
        card = json.loads(card_path.read_text()) if card_path.is_file() else model_card(root, cfg, calibration)
        return cls(root, cfg, load_models(root, cfg), calibration, card, run_key(root, cfg))

    @staticmethod
    def settings(root: Path, overrides: dict[str, Any] | None = None, samples: int | None = None) -> Config:
        """``root``'s config with ``overrides`` (``--set``), then ``samples`` (``--samples``) on top."""
        cfg = load_config(workdir.config_file(root), overrides=overrides) if overrides else load_work_config(root)
        return with_samples(cfg, samples)

    @classmethod
    def for_config(cls, root: Path, cfg: Config, device: str = "cpu", data_dir: Path | None = None) -> "Detector":
        """The networks ``cfg`` needs from ``root``, uncalibrated: ``calibrate``, ``evaluate``, ``tune`` and
        ``benchmark`` choose its threshold on the validation subjects with these settings; the statistics
        are fitted on ``data_dir``'s training controls (default ``root``'s)."""
        root = Path(root)
        data_dir = Path(data_dir) if data_dir and Path(data_dir) != root else None
        return cls(root, cfg, load_models(root, cfg, device, data_dir), data_dir=data_dir)

    def with_config(self, cfg: Config, device: str = "cpu") -> "Detector":
        """This detector under other inference settings, uncalibrated: the same networks when ``cfg`` reads
        the same model folders, else those ``cfg`` needs, loaded now. Kept networks keep the control
        z-score's statistics (they do not depend on settings); the normative residual's are those of ``cfg``'s
        draws (``tune``'s points each have their own, read from disk once fitted)."""
        if _networks(self.root, cfg) != _networks(self.root, self.cfg):
            return Detector.for_config(self.root, cfg, device, self.data_dir)
        models = self.models
        if cfg.method.normative:
            models = replace(models, normative=normative_for(self.data_dir or self.root, models, cfg, device,
                                                             networks_dir=self.root))
        return Detector(self.root, cfg, models, data_dir=self.data_dir)

    def calibrated(self, calibration: dict) -> "Detector":
        """This detector with ``calibration`` (e.g. chosen just now on the validation subjects)."""
        return replace(self, calibration=calibration)

    @property
    def clusters(self) -> ClusterSettings:
        """Threshold, smallest cluster and ranking: the calibration's, for every reader of this detector."""
        if self.calibration is None:
            raise UserError(f"{self.root}: the detector has no calibration; run `pseudohealthy calibrate {self.root}`")
        return ClusterSettings.of(self.calibration)

    def __reduce__(self):
        return _reloaded, (self.root, self.cfg, self.calibration, self.card, self.run_key, self.data_dir)
