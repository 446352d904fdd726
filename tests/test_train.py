"""One training run end to end: jobs/train.py in-process, and the same run on 2 Ray Train CPU workers."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from alignray.train import load_preferences, train
from alignray.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def preferences(tmp_path_factory):
    rows = [
        ("the film", " was great fun and moving", " was dull"),
        ("I think", " it is good", " it is bad, bad, bad"),
        ("a movie", " to love", " to hate it"),
        ("this was", " a joy to watch", " boring"),
    ]
    path = tmp_path_factory.mktemp("prefs") / "prefs.parquet"
    pd.DataFrame(rows * 4, columns=["prompt", "chosen", "rejected"]).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield ray
    ray.shutdown()


def _changed(before: Path, after: Path) -> bool:
    start, end = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    return any(not torch.equal(start[k], end[k]) for k in start)


def test_job_trains_saves_safetensors_and_metrics(tmp_path, micro_world, preferences):
    from jobs.train import main

    out, _ = micro_world
    result = main(
        ["--data", str(preferences), "--policy", str(out / "policy"), "--out", str(tmp_path), "--batch-size", "4",
         "--divergence", "alpha_divergence", "--alpha", "0.3", "--learning-rate", "1e-3", "--max-length", "64"]
    )  # fmt: skip
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["config"]["alpha"] == 0.3 and saved["pairs"] == 16
    # Step 1 starts at the reference, where every f-DPO sigmoid loss is log 2; a loss that cannot move (seed 002's
    # chosen-twice ratio) would stay there.
    assert result["metrics"]["train_loss"] < math.log(2) - 0.01
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not list((tmp_path / "model").glob("*.bin"))
    assert _changed(out / "policy", tmp_path / "model")


def _scalar_tags(directory: Path) -> set[str]:
    """Scalar tags in TensorBoard event files (TFRecords: length, crc, an Event proto, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in directory.glob("events.out.tfevents.*"):
        data, at = path.read_bytes(), 0
        while at < len(data):
            length = int.from_bytes(data[at : at + 8], "little")
            event = Event.FromString(data[at + 12 : at + 12 + length])
            tags |= {value.tag for value in event.summary.value if value.HasField("simple_value")}
            at += 12 + length + 4
    return tags


def test_training_logs_to_tensorboard_when_given_a_logging_dir(tmp_path, micro_world, preferences):
    world, _ = micro_world
    config = TrainConfig(data=str(preferences), policy=str(world / "policy"), out=str(tmp_path / "run"),
                         batch_size=2, max_length=64, learning_rate=1e-3)  # fmt: skip
    train(config, quiet=True, logging_dir=str(tmp_path / "tb"))
    tags = _scalar_tags(tmp_path / "tb")
    assert {"train/loss", "train/rewards/margins", "train/rewards/f_margins"} <= tags, tags


def test_job_rejects_bad_input_before_loading_anything(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train.py"), "--data", str(tmp_path / "none.parquet")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode != 0
    assert "data=" in run.stderr and "does not exist" in run.stderr
    assert "Loading weights" not in run.stderr


def test_preferences_need_the_three_columns(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"prompt": ["a"], "chosen": ["b"]}).to_parquet(path)
    with pytest.raises(ValueError, match="lacks columns \\['rejected'\\]"):
        load_preferences(path)


def test_two_ray_train_workers_train_report_and_checkpoint(tmp_path, micro_world, preferences, ray_cluster):
    out, _ = micro_world
    config = TrainConfig(
        data=str(preferences), policy=str(out / "policy"), out=str(tmp_path), batch_size=4, workers=2,
        learning_rate=1e-3, max_length=64,
    )  # fmt: skip
    result = train(config)
    assert result["metrics"]["epoch"] == 1.0
    assert "loss" in result["metrics"] and "rewards/margins" in result["metrics"]
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert _changed(out / "policy", tmp_path / "model")


def test_save_points_keep_the_model_along_the_run(tmp_path, micro_world, preferences):
    """16 pairs in batches of 2 are 8 steps: thirds of them are saved at steps 3 and 6, beside the final model; each
    point is a loadable policy that differs from the start and from the end."""
    world, _ = micro_world
    config = TrainConfig(
        data=str(preferences), policy=str(world / "policy"), out=str(tmp_path), batch_size=2, learning_rate=1e-3,
        max_length=64, save_points=3,
    )  # fmt: skip
    result = train(config)
    assert result["points"] == [3, 6] and result["metrics"]["global_step"] == 8
    for step in (3, 6):
        point = tmp_path / "points" / f"step-{step}"
        assert (point / "model.safetensors").is_file() and (point / "config.json").is_file()
        assert not list(point.glob("*.bin")) and not (point / "trainer_state.json").exists()
        assert _changed(world / "policy", point) and _changed(point, tmp_path / "model")
        _assert_loadable_policy(point)
    assert not (tmp_path / "trainer").exists()


def _assert_loadable_policy(path: Path) -> None:
    """``path`` loads as a policy (``load_policy``, safetensors, with its tokenizer) and generates text."""
    from alignray.world import load_policy

    model, tokenizer = load_policy(str(path), device="cpu")
    ids = tokenizer(["the film"], return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.input_ids.shape[1] and tokenizer.decode(out[0])


def test_points_at_every_ceil_of_a_step_count_that_does_not_divide(tmp_path, micro_world):
    """59 steps, 3 points: saves at ceil(59 / 3) = 20 and 40, then the final model at 59 (a save at 60 would fall
    past the end, and a point at 59 would duplicate the final model)."""
    world, _ = micro_world
    data = tmp_path / "prefs.parquet"
    pd.DataFrame([(f"prompt {i}", " was great fun", " was dull") for i in range(59)],
                 columns=["prompt", "chosen", "rejected"]).to_parquet(data)  # fmt: skip
    config = TrainConfig(data=str(data), policy=str(world / "policy"), out=str(tmp_path / "run"), batch_size=1,
                         learning_rate=1e-3, max_length=32, save_points=3)  # fmt: skip
    result = train(config, quiet=True)
    assert result["points"] == [20, 40] and result["metrics"]["global_step"] == 59
    assert sorted(p.name for p in (tmp_path / "run" / "points").iterdir()) == ["step-20", "step-40"]
    for step in (20, 40):
        _assert_loadable_policy(tmp_path / "run" / "points" / f"step-{step}")


def test_save_points_on_ray_train_workers(tmp_path, micro_world, preferences, ray_cluster):
    out, _ = micro_world
    config = TrainConfig(
        data=str(preferences), policy=str(out / "policy"), out=str(tmp_path), batch_size=2, workers=2,
        learning_rate=1e-3, max_length=64, save_points=2,
    )  # fmt: skip
    result = train(config)  # 16 pairs, 2 workers of 2: 4 steps, halves at 2
    assert result["points"] == [2] and result["metrics"]["global_step"] == 4
    assert "loss" in result["metrics"] and "rewards/margins" in result["metrics"]  # logged before the last save
    assert _changed(tmp_path / "points" / "step-2", tmp_path / "model")
