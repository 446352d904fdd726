"""The Ray Data preference pipeline on the micro world."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_dataset

from alignray.config import parse_config
from alignray.data.config import PreferenceConfig
from alignray.data.pairing import STRATEGIES, make_pairs
from alignray.data.pipeline import build_preferences, load_prompts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def built(micro_world, ray_cluster, tmp_path_factory):
    out, _ = micro_world
    config = PreferenceConfig(
        out=str(tmp_path_factory.mktemp("prefs")),
        policy=str(out / "policy"),
        reward=str(out / "reward"),
        num_prompts=12,
        samples_per_prompt=4,
        max_new_tokens=8,
        batch_size=8,
        seed=5,
    )
    pairs, card = build_preferences(config)
    return config, pairs, card


def test_preference_set_is_a_datasets_parquet_with_chosen_above_rejected(built):
    config, pairs, card = built
    loaded = load_dataset("parquet", data_files=str(Path(config.out) / "preferences.parquet"), split="train")
    assert loaded.column_names == ["prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"]
    assert len(loaded) == len(pairs) == card["counts"]["pairs"] > 0
    assert (pairs["chosen_reward"] > pairs["rejected_reward"]).all()
    assert card["counts"] == {"prompts": 12, "samples": 48, "pairs": len(pairs)}
    saved = json.loads((Path(config.out) / "card.json").read_text())
    assert saved["config"]["seed"] == 5 and saved["seconds"] > 0


def test_samples_hold_every_prompt_times_samples_per_prompt(built):
    config, _, _ = built
    samples = pd.read_parquet(Path(config.out) / "samples.parquet")
    assert len(samples) == 48
    assert samples.groupby("prompt_id").size().eq(4).all()
    assert samples["row"].tolist() == list(range(48))


def test_same_seed_same_data_set_other_seed_other_data(built, tmp_path):
    config, pairs, _ = built
    from dataclasses import replace

    again, _ = build_preferences(replace(config, out=str(tmp_path / "again"), generation_actors=1, batch_size=8))
    pd.testing.assert_frame_equal(pairs, again)
    other, _ = build_preferences(replace(config, out=str(tmp_path / "other"), seed=6))
    assert not pairs[["chosen", "rejected"]].equals(other[["chosen", "rejected"]])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_pairs_the_pipeline_samples(built, strategy):
    config, _, _ = built
    samples = pd.read_parquet(Path(config.out) / "samples.parquet")
    params = (
        {"hi": float(samples["reward"].median()), "lo": float(samples["reward"].median())}
        if strategy == "threshold"
        else {}
    )
    frame = make_pairs(samples, strategy, **params)
    assert len(frame) > 0 and (frame["chosen_reward"] > frame["rejected_reward"]).all()


def test_fixed_and_file_prompt_sources(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("Movie\n\nFilm\nActor\n")
    assert load_prompts(PreferenceConfig(prompts="fixed", prompt_file=str(words))) == ["Movie", "Film", "Actor"]
    assert load_prompts(PreferenceConfig(prompts="fixed", fixed_prompts=("A", "B"))) == ["A", "B"]
    table = tmp_path / "prompts.jsonl"
    pd.DataFrame({"text": ["x", "y"]}).to_json(table, orient="records", lines=True)
    assert load_prompts(PreferenceConfig(prompts="file", prompt_file=str(table), prompt_column="text")) == ["x", "y"]
    with pytest.raises(ValueError, match="prompt_column='prompt' is not in"):
        load_prompts(PreferenceConfig(prompts="file", prompt_file=str(table)))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prompts", "imdb"], "prompts='imdb' is unknown"),
        (["--prompts", "file"], "prompts='file' needs prompt_file"),
        (["--strategy", "best-vs-worst"], "did you mean 'best_vs_worst'"),
        (["--samples-per-prompt", "1"], "samples_per_prompt=1 must be >= 2"),
        (["--top-p", "1.5"], "top_p=1.5 must lie in \\(0, 1\\]"),
        (["--strategy", "threshold", "--hi", "0", "--lo", "1"], "threshold needs hi > lo"),
        (["--generation-actors", "0"], "generation_actors=0 must be an integer >= 1"),
        (["--prompt-file", "missing.txt"], "prompt_file='missing.txt' does not exist"),
    ],
)
def test_bad_options_are_named(capsys, argv, message):
    import re

    with pytest.raises(SystemExit):
        parse_config(PreferenceConfig, argv)
    assert re.search(message, capsys.readouterr().err)


def test_job_fails_before_ray_starts_on_bad_input():
    run = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "build_preferences.py"), "--num-prompts", "0"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "num_prompts=0 must be an integer >= 1" in run.stderr
    assert "Started a local Ray instance" not in run.stderr


def test_cpu_actor_shares_fit_on_one_node(monkeypatch):
    import ray

    from alignray.data.pipeline import _actor_resources

    nodes = [{"Alive": True, "Resources": {"CPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 1.0}}]
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    plan = _actor_resources(None, None, None)
    assert plan["generation"][1]["num_cpus"] <= 1.0  # 1.5 CPUs would never fit a 1-CPU node
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    assert _actor_resources(None, None, None)["generation"][1]["num_cpus"] == 1.5  # one node: the whole share
