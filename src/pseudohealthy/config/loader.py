"""Load presets or user YAML files into :class:`Config`, with one-line errors for bad files."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pseudohealthy import workdir
from pseudohealthy.config.schema import Config
from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_text_atomic

_PRESET_PACKAGE = "pseudohealthy.config.presets"


def available_presets() -> list[str]:
    files = resources.files(_PRESET_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML ({exc.__class__.__name__}); fix the file's syntax") from exc
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of config sections at the top level")
    return data


def _known_keys(model: type, loc: tuple) -> list[str]:
    """Field names valid at ``loc`` inside ``model``, for 'did you mean' hints."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None or not hasattr(field.annotation, "model_fields"):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _explain(exc: ValidationError, source: str) -> str:
    errors = exc.errors()
    # An unknown key usually explains a "missing" one (a typo), so report it first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), _known_keys(Config, loc), n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"{source}: unknown key '{where}'{suggestion}; remove or rename it"
    if err["type"] == "missing":
        return f"{source}: missing key '{where}'; add it (see the packaged presets for an example)"
    return f"{source}: invalid value for '{where}': {err['msg']}"


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def load_config(preset: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load a packaged preset by name (``quick``, ``paper``) or a YAML file by path.

    ``overrides`` is a nested mapping applied on top (e.g. ``{"seed": 3}``).
    """
    name = str(preset)
    if name in available_presets():
        source = f"preset '{name}'"
        text = resources.files(_PRESET_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    else:
        path = Path(name)
        if not path.is_file():
            raise UserError(
                f"config '{name}': neither a preset ({', '.join(available_presets())}) nor an existing YAML file"
            )
        source = str(path)
        text = path.read_text(encoding="utf-8")
    data = deep_update(_read_yaml(text, source), overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(_explain(exc, source)) from exc


def with_overrides(cfg: Config, overrides: dict[str, Any], source: str = "--set") -> Config:
    """``cfg`` with nested ``overrides`` applied and validated again."""
    try:
        return Config.model_validate(deep_update(cfg.model_dump(mode="json"), overrides))
    except ValidationError as exc:
        raise UserError(_explain(exc, source)) from exc


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config (all defaults filled in) as YAML, atomically."""
    write_text_atomic(Path(path), config_to_yaml(cfg))


def load_work_config(work_dir: Path, preset: str | Path | None = None) -> Config:
    """The config a work folder was prepared with (``WORK_DIR/config.yaml``), or ``preset`` when given,
    which must then agree with it on the data settings."""
    saved = workdir.config_file(work_dir)
    if preset is None:
        if not saved.is_file():
            raise UserError(f"{work_dir}: no config.yaml; it is not a work folder made by `pseudohealthy prepare`")
        return load_config(saved)
    cfg = load_config(preset)
    if saved.is_file() and load_config(saved).data != cfg.data:
        raise UserError(f"{work_dir} was prepared with other data settings than '{preset}'; use that preset")
    return cfg
