"""The sweep: Pareto maths, the search space, and end-to-end sweeps on the micro world in a local Ray (2 CPUs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from alignray.config import SweepConfig
from alignray.sweep.pareto import hypervolume, hypervolume_curve, pareto_mask
from alignray.sweep.space import GRID_BETAS, SearchSpace, grid_points
from alignray.sweep.trial import FAULT_VARIABLE

ROOT = Path(__file__).resolve().parents[1]


def _brute_force_front(points: np.ndarray) -> np.ndarray:
    keep = []
    for i, p in enumerate(points):
        dominated = any((q >= p).all() and (q > p).any() for j, q in enumerate(points) if j != i)
        keep.append(not dominated)
    return np.array(keep)


def test_pareto_mask_equals_a_brute_force_check():
    rng = np.random.default_rng(0)
    for _ in range(50):
        points = rng.integers(0, 6, size=(12, 2)).astype(float)  # small integers: many ties and duplicates
        np.testing.assert_array_equal(pareto_mask(points), _brute_force_front(points))


def test_nan_rows_are_never_on_the_frontier():
    points = np.array([[1.0, 1.0], [np.nan, 5.0], [0.5, 2.0]])
    np.testing.assert_array_equal(pareto_mask(points), [True, False, True])


def test_hypervolume_by_hand():
    points = np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [1.5, 1.5], [0.5, 5.0], [4.0, -1.0]])
    # reference (0.5, 0): (0.5, 5) and (4, -1) lie on or below it; the rest: 2.5*1 + 1.5*1 + 0.5*1 = 4.5
    assert hypervolume(points, (0.5, 0.0)) == pytest.approx(4.5)
    assert hypervolume(points, (10.0, 10.0)) == 0.0
    curve = hypervolume_curve(points, (0.5, 0.0))
    assert curve == pytest.approx([2.5, 4.0, 4.5, 4.5, 4.5, 4.5])


def test_space_suggests_alpha_only_for_alpha_divergence_and_stays_in_range():
    config = SweepConfig(beta_min=0.1, beta_max=1.0, alpha_min=0.2, alpha_max=0.4)
    space = SearchSpace(config)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        constants = space(trial)
        seen.add(trial.params["divergence"])
        assert ("alpha" in trial.params) == (trial.params["divergence"] == "alpha_divergence")
        assert 0.1 <= trial.params["beta"] <= 1.0 and 2e-4 <= trial.params["learning_rate"] <= 2e-3
        assert 0.2 <= trial.params.get("alpha", 0.3) <= 0.4
        assert constants == {"loss_type": "sigmoid"}
    assert seen == set(config.divergences)


def test_grid_is_the_seeds_grid():
    points = grid_points(SweepConfig(search="grid"))
    assert len(points) == 16
    assert sorted({p["beta"] for p in points}) == list(GRID_BETAS)
    alphas = {p["divergence"]: p.get("alpha") for p in points}
    assert alphas == {"reverse_kl": None, "forward_kl": None, "js_divergence": None, "alpha_divergence": 0.5}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"divergences": ("reverse_kl", "revers_kl")}, "did you mean .reverse_kl."),
        ({"divergences": ("total_variation",)}, "total_variation"),
        ({"beta_min": 1.0, "beta_max": 0.5}, "beta_min=1.0 exceeds beta_max=0.5"),
        ({"learning_rate_min": 0.0}, "learning_rate_min=0.0 must be > 0"),
        ({"alpha_min": 0.0}, "0 < alpha_min"),
        ({"num_trials": 0}, "num_trials=0"),
        ({"sampler": "cmaes"}, "sampler='cmaes' is unknown"),
        ({"diversity_metric": "diversity/entropy"}, "did you mean"),
        ({"points_to_evaluate": ('{"divergence": "reverse_kl", "beta": 0.1}',)}, "lacks ['learning_rate']"),
        ({"points_to_evaluate": ('{"divergence": "reverse_kl", "beta": -1, "learning_rate": 1e-4}',)}, "beta=-1"),
        ({"resume": True, "overwrite": True}, "contradict"),
    ],
)
def test_bad_sweep_values_are_named(values, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        SweepConfig(**values)


def test_sweep_job_refuses_bad_input_before_ray_and_writes_nothing(tmp_path):
    out = tmp_path / "exp"
    cases = [
        (["--beta-min", "nan"], "beta_min"),
        (["--policy", str(tmp_path / "nowhere")], "has no config.json"),
        (["--resume"], "holds no sweep to resume"),
    ]
    for argv, message in cases:
        run = subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--output", str(out), *argv],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert run.returncode != 0 and message in run.stderr, run.stderr
        assert not out.exists()
        assert "Started a local Ray" not in run.stdout + run.stderr


# --- end-to-end on the micro world ------------------------------------------------------------------------------

MICRO_SWEEP = [
    "--num-prompts", "12", "--samples-per-prompt", "3", "--max-new-tokens", "8", "--max-length", "48",
    "--eval-prompts", "8", "--eval-samples-per-prompt", "1", "--batch-size", "4", "--startup-trials", "2",
    "--beta-min", "0.1", "--beta-max", "1.0",
]  # fmt: skip


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    os.environ[FAULT_VARIABLE] = "nan:forward_kl"  # workers inherit it: forward_kl trials meet a NaN reward
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield ray
    ray.shutdown()
    os.environ.pop(FAULT_VARIABLE)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, micro_world, ray_cluster):
    from jobs.sweep import main

    world, _ = micro_world
    out = tmp_path_factory.mktemp("sweep") / "exp"
    point = '{"divergence": "forward_kl", "beta": 0.5, "learning_rate": 1e-3}'
    argv = ["--output", str(out), "--policy", str(world / "policy"), "--reward", str(world / "reward"),
            "--num-trials", "4", "--points-to-evaluate", point, *MICRO_SWEEP]  # fmt: skip
    here = os.getcwd()
    os.chdir(out.parent)  # a relative --output, as users type it: trials run in working directories of their own
    try:
        summary = main(["--output", "exp", *argv[2:]])
    finally:
        os.chdir(here)
    return out, summary, argv


def test_sweep_leaves_results_frontier_study_and_models(sweep):
    out, summary, _ = sweep
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 and table["trial"].is_unique
    ok = table[table["status"] == "ok"]
    points = ok[["reward/mean", "diversity/token_entropy"]].to_numpy()
    np.testing.assert_array_equal(ok["pareto"].to_numpy(), _brute_force_front(points))
    assert not table.loc[table["status"] != "ok", "pareto"].any()
    front = pd.read_csv(out / "pareto.csv")
    assert sorted(front["trial"]) == sorted(table.loc[table["pareto"], "trial"]) == sorted(summary["frontier"])
    for trial in front["trial"]:
        assert (out / "frontier" / trial / "model" / "model.safetensors").is_file()
        samples = pd.read_parquet(out / "frontier" / trial / "samples.parquet")
        assert {"prompt_id", "completion", "reward", "tokens"} <= set(samples.columns) and len(samples) == 8
    reference = summary["reference_point"]
    assert summary["hypervolume"] == pytest.approx(hypervolume(points, tuple(reference)))
    assert (out / "report.md").read_text().count("base (SFT)") == 1
    assert sorted(p.stem for p in (out / "samples").glob("*.parquet")) == sorted(ok["trial"])
    # timings are reported beside the metrics
    assert (ok["time/train_s"] > 0).all() and (ok["time/eval_s"] > 0).all()


def test_nan_trial_is_errored_with_its_reason_and_failed_in_the_study(sweep):
    out, summary, _ = sweep
    table = pd.read_parquet(out / "results.parquet")
    forward = table[table["divergence"] == "forward_kl"]
    assert len(forward) >= 1 and (forward["status"] == "error").all()
    assert forward["reason"].str.contains("non-finite objectives").all()
    assert (table.loc[table["divergence"] != "forward_kl", "status"] == "ok").all()
    assert summary["errors"] == len(forward)

    study_name = json.loads((out / "sweep.json").read_text())["study"]
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 4
    assert states.count(optuna.trial.TrialState.FAIL) == len(forward)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4 - len(forward) and all(len(t.values) == 2 for t in complete)
    ok = table[table["status"] == "ok"]
    assert sorted(v[0] for v in (t.values for t in complete)) == pytest.approx(sorted(ok["reward/mean"]))


def test_existing_experiment_is_refused_without_resume_or_overwrite(sweep):
    out, _, argv = sweep
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "sweep.py"), *argv], capture_output=True, text=True)
    assert run.returncode != 0 and "already holds the sweep" in run.stderr and "--resume" in run.stderr


def test_resume_after_the_driver_is_killed_adds_no_duplicates(tmp_path, micro_world, ray_cluster):
    from jobs.sweep import main

    world, _ = micro_world
    out = tmp_path / "exp"
    argv = ["--output", str(out), "--policy", str(world / "policy"), "--reward", str(world / "reward"),
            "--num-trials", "4", "--max-concurrent-trials", "1", "--divergences", "reverse_kl",
            "js_divergence", *MICRO_SWEEP]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    driver = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "sweep.py"), *argv], env=env, cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(out.glob("tune/*/run_trial_*/checkpoint_*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    finished_before = {p.parent.name for p in out.glob("tune/*/run_trial_*/checkpoint_*")}
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert finished_before, "no trial finished before the deadline"

    summary = main(["--output", str(out), "--resume"])
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 and table["trial"].is_unique and summary["trials"] == 4
    assert (table["status"] == "ok").all()
    finished_ids = {name.split("_")[2] for name in finished_before}
    assert finished_ids <= set(table["trial"])  # the trials done before the kill are kept, not rerun
    study = optuna.load_study(
        study_name=json.loads((out / "sweep.json").read_text())["study"], storage=f"sqlite:///{out / 'study.db'}"
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4


def test_cluster_file_validates_against_rays_own_schema():
    import jsonschema
    import ray.autoscaler
    import yaml

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(cluster, schema)
    assert "--dashboard-host=127.0.0.1" in " ".join(cluster["head_start_ray_commands"])
    assert all("RAY_AUTH_MODE=token" in c for c in cluster["head_start_ray_commands"] if "ray start" in c)
    cluster["available_node_types"]["gpu_worker"]["max_workerz"] = 1
    with pytest.raises(jsonschema.ValidationError, match="max_workerz"):
        jsonschema.validate(cluster, schema)


def test_every_divergence_is_tried_first_unless_points_are_given():
    from alignray.sweep.space import seed_points

    config = SweepConfig(beta_min=0.01, beta_max=1.0, learning_rate_min=1e-4, learning_rate_max=1e-2)
    points = seed_points(config)
    assert [p["divergence"] for p in points] == list(config.divergences)
    assert all(p["beta"] == pytest.approx(0.1) and p["learning_rate"] == pytest.approx(1e-3) for p in points)
    assert [p.get("alpha") for p in points] == [None, None, None, pytest.approx(0.5)]
    assert len(seed_points(SweepConfig(num_trials=2))) == 2
    point = '{"divergence": "gan", "beta": 0.3, "learning_rate": 1e-3}'
    given = SweepConfig(divergences=("reverse_kl", "gan"), points_to_evaluate=(point,))
    assert seed_points(given) == [{"divergence": "gan", "beta": 0.3, "learning_rate": 1e-3}]
    with pytest.raises(ValueError, match="divergence='gan' is outside the searched divergences"):
        SweepConfig(points_to_evaluate=(point,))  # Optuna would refuse it inside the search, after the data stage
    assert len(seed_points(SweepConfig(search="grid"))) == 16


def test_sweep_report_and_study_through_optunas_api(sweep):
    out, summary, _ = sweep
    for name in ("report.md", "report.html", "pareto.png", "rewards.png", "hypervolume.png"):
        assert (out / name).is_file(), name
    assert (out / "report.md").read_text().count("| base (SFT) |") == 1
    table = pd.read_parquet(out / "results.parquet")
    ok = table[table["status"] == "ok"]
    samples = pd.read_parquet(out / "samples" / f"{ok['trial'].iloc[0]}.parquet")
    assert "completion_ids" in samples.columns  # token-metric intervals need them
    # the live view: optuna-dashboard reads this storage; every finished trial is listed with both objectives
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{out / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == len(ok)
    values = sorted(tuple(t.values) for t in complete)
    expected = sorted(zip(ok["reward/mean"], ok["diversity/token_entropy"], strict=True))
    assert np.asarray(values) == pytest.approx(np.asarray(expected))
    # Tune's trial directories hold the training curves as TensorBoard events
    assert len(list(out.glob("tune/*/run_trial_*/events.out.tfevents.*"))) >= 2 * len(ok)


def test_make_sweep_stops_only_the_head_it_started(tmp_path):
    from alignray.sweep.submit import _stop_head

    ours = tmp_path / "alignray-ray-x"
    ours.mkdir()
    sleeper = [sys.executable, "-c", "import time, sys; time.sleep(60)"]
    mine = subprocess.Popen([*sleeper, f"--temp-dir={ours}"])
    other = subprocess.Popen([*sleeper, f"--temp-dir={tmp_path / 'someone-else'}"])
    try:
        _stop_head(str(ours))
        assert mine.wait(timeout=20) is not None
        assert other.poll() is None
        assert not ours.exists()
    finally:
        other.kill()
        mine.kill()
