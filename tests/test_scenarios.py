"""Scenarios load, and malformed ones name the file and the field."""

from __future__ import annotations

import pytest
import yaml

from g4sim.scenarios import SCENARIO_DIR, ScenarioError, audio_tokens, get_scenario, load_scenario, load_scenarios


def test_every_scenario_loads():
    scenarios = load_scenarios()
    assert len(scenarios) >= 8
    assert {"chat-8k", "rag-128k", "codebase-256k", "serving-fleet", "on-device-rpi5", "on-device-phone",
            "multimodal-images", "audio-transcription", "agent-loop"} <= set(scenarios)


def test_multimodal_tokens():
    assert get_scenario("multimodal-images").multimodal_tokens == 8 * 560
    assert get_scenario("audio-transcription").multimodal_tokens == 750  # 30 s x 25 tokens/s


@pytest.mark.parametrize("field,mutate", [
    ("context_tokens", lambda d: d.pop("context_tokens")),
    ("models", lambda d: d.update(models=["e3b"])),
    ("engine", lambda d: d.update(engine="tgi")),
    ("soft_tokens_per_image", lambda d: d.update(images_per_request=2, soft_tokens_per_image=5000)),
    ("colour", lambda d: d.update(colour="red")),
    ("concurrency", lambda d: d.update(concurrency=0)),
    ("soft_tokens_per_image", lambda d: d.update(images_per_request=1, soft_tokens_per_image=300)),
    ("audio_seconds_per_request", lambda d: d.update(models=["31b"], audio_seconds_per_request=10)),
    ("quants", lambda d: d.update(quants=["q4_k_x"])),
    ("devices", lambda d: d.update(devices=["rtx9090"])),
    ("output_tokens", lambda d: d.update(output_tokens="many")),
])
def test_malformed_scenario_names_file_and_field(tmp_path, field, mutate):
    data = yaml.safe_load((SCENARIO_DIR / "chat-8k.yaml").read_text())
    data["name"] = "broken"
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "broken.yaml" in str(err.value) and field in str(err.value)


def test_unknown_scenario_suggests():
    with pytest.raises(ScenarioError, match="did you mean 'chat-8k'"):
        get_scenario("chat-8")


def test_audio_tokens_follow_the_reference_processor():
    # Gemma4Processor._compute_audio_num_tokens on 16 kHz samples: mel frames, two stride-2 convs, cap 750.
    assert audio_tokens(10) == 250
    assert audio_tokens(1) == 25
    assert audio_tokens(30) == 750
    assert audio_tokens(60) == 750  # capped per clip
    assert audio_tokens(0.005) == 0


def test_scenarios_only_name_known_models_devices_and_budgets():
    for scenario in load_scenarios().values():
        assert scenario.description and scenario.models and scenario.devices and scenario.quants
        if scenario.images_per_request:
            assert scenario.soft_tokens_per_image in (70, 140, 280, 560, 1120)
