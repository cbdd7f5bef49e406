from pathlib import Path

import pytest
import yaml

from pseudohealthy.config import available_presets, load_config, save_config
from pseudohealthy.errors import UserError


def test_presets_quick_and_paper_exist():
    assert {"quick", "paper"} <= set(available_presets())


def test_paper_preset_has_the_papers_sizes():
    cfg = load_config("paper")
    assert cfg.data.image_size == 256
    assert cfg.translator.channels == [96 * m for m in (1, 1, 2, 2, 4, 4)]
    assert (cfg.diffusion.timesteps, cfg.diffusion.beta_start, cfg.diffusion.beta_end) == (1000, 0.0015, 0.0155)
    assert cfg.diffusion.noise_level == 100 and cfg.diffusion.guidance_scale == 5.0


def test_quick_preset_is_small():
    cfg = load_config("quick")
    assert cfg.data.image_size <= 128
    assert max(cfg.translator.channels) <= 128


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _quick_dict() -> dict:
    return load_config("quick").model_dump(mode="json")


def test_typo_in_top_level_key_names_key_and_suggests(tmp_path):
    data = _quick_dict()
    data["trian_translator"] = data.pop("train_translator")
    with pytest.raises(UserError) as err:
        load_config(_write(tmp_path, data))
    msg = str(err.value)
    assert "trian_translator" in msg and "train_translator" in msg and str(tmp_path) in msg


def test_typo_in_nested_key(tmp_path):
    data = _quick_dict()
    data["diffusion"]["noise_levl"] = 3
    with pytest.raises(UserError, match=r"diffusion\.noise_levl.*did you mean 'noise_level'"):
        load_config(_write(tmp_path, data))


def test_inconsistent_values_are_rejected(tmp_path):
    data = _quick_dict()
    data["diffusion"]["steps"] = data["diffusion"]["noise_level"] + 1
    with pytest.raises(UserError, match="steps cannot exceed noise_level"):
        load_config(_write(tmp_path, data))


def test_decoding_from_a_noise_level_a_network_never_learnt_is_refused():
    with pytest.raises(UserError, match=r"noise_level \(L = 600\) is above train_translator.max_timestep \(500\)"):
        load_config("quick", overrides={"diffusion": {"noise_level": 600}, "train_translator": {"max_timestep": 500}})
    # every level learnt, or no translator used: nothing to refuse
    load_config("quick", overrides={"diffusion": {"noise_level": 600}, "train_translator": {"max_timestep": None}})
    load_config("quick", overrides={"diffusion": {"noise_level": 600}, "train_translator": {"max_timestep": 500},
                                    "method": {"detector": "flair_zscore", "normative": False}})
    # the classifier guides every step from L down: the same holds for it, unless nothing is guided
    with pytest.raises(UserError, match=r"L = 300\) is above train_classifier.max_timestep \(200\): the classifier"):
        load_config("quick", overrides={"diffusion": {"noise_level": 300}, "train_classifier": {"max_timestep": 200}})
    load_config("quick", overrides={"diffusion": {"noise_level": 300}, "train_classifier": {"max_timestep": 200},
                                    "method": {"guidance": "none"}})


def test_reinsertion_without_an_inversion_path_is_refused():
    for change in ({"method": {"encode": "noise"}}, {"diffusion": {"estimator": "one_step"}}):
        with pytest.raises(UserError, match="diffusion.reinsert .* set diffusion.reinsert=false"):
            load_config("quick", overrides={**change, "diffusion": {**change.get("diffusion", {}), "reinsert": True}})
        load_config("quick", overrides={**change, "diffusion": {**change.get("diffusion", {}), "reinsert": False}})


def test_the_normative_residual_is_refused_where_there_is_no_pseudo_healthy_image():
    for detector in ("flair_zscore", "control_zscore"):
        with pytest.raises(UserError, match=f"no-learning detector {detector} has none: set method.normative=false"):
            load_config("quick", overrides={"method": {"detector": detector}})  # the preset has it on
        load_config("quick", overrides={"method": {"detector": detector, "normative": False}})
    assert load_config("quick", overrides={"method": {"detector": "autoencoder"}}).method.normative


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="neither a preset"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_overrides_and_round_trip(tmp_path):
    cfg = load_config("quick", overrides={"seed": 11, "diffusion": {"guidance_scale": 0.0}})
    assert cfg.seed == 11 and cfg.diffusion.guidance_scale == 0.0
    assert cfg.diffusion.noise_level == load_config("quick").diffusion.noise_level
    path = tmp_path / "resolved.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
