"""The sweep: Pareto maths, the search space, and end-to-end sweeps on the micro world in a local Ray (2 CPUs)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

from alignray.sweep.config import SweepConfig
from alignray.sweep.pareto import hypervolume, hypervolume_curve, pareto_mask
from alignray.sweep.space import GRID_BETAS, SearchSpace, grid_points
from alignray.sweep.trial import FAULT_VARIABLE

ROOT = Path(__file__).resolve().parents[1]
DIVERSITY = SweepConfig().objectives[1]


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
        divergence = trial.params["divergence"]
        params = {name.removeprefix(f"{divergence}."): value for name, value in trial.params.items()}
        assert set(trial.params) - {"divergence"} == {f"{divergence}.{n}" for n in params if n != "divergence"}
        assert ("alpha" in params) == (divergence == "alpha_divergence")
        assert 0.1 <= params["beta"] <= 1.0 and 1e-4 <= params["learning_rate"] <= 1e-3
        assert 0.2 <= params.get("alpha", 0.3) <= 0.4
        assert constants == {"loss_type": "sigmoid"}
    assert seen == set(config.divergences)


def test_grid_is_the_seeds_grid():
    points = grid_points(SweepConfig(search="grid"))
    assert len(points) == 16
    assert sorted({p["beta"] for p in points}) == list(GRID_BETAS)
    alphas = {p["divergence"]: p.get("alpha") for p in points}
    assert alphas == {"reverse_kl": None, "forward_kl": None, "js_divergence": None, "alpha_divergence": 0.5}


# fmt: off
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
        ({"objectives": ("reward/meen", "kl/ref:min")},
         "objectives='reward/meen' is unknown; did you mean 'reward/mean'"),
        ({"objectives": ("reward/mean", "kl/ref:lowest")},
         "objectives: 'kl/ref:lowest' has the direction 'lowest'; expected kl/ref:max or kl/ref:min"),
        ({"objectives": ("reward/mean",)}, "gives 1; expected exactly two objectives"),
        ({"objectives": ("reward/mean", "kl/ref:min", "diversity/word_entropy")}, "gives 3; expected exactly two"),
        ({"objectives": ("reward/mean", "reward/mean:min")},
         "names reward/mean twice; expected two different metrics"),
        # the base policy's KL to itself is 0: a minimised kl/ref needs a reference point that a trial can beat
        ({"objectives": ("reward/mean", "kl/ref:min"), "max_kl": None},
         "objectives: kl/ref:min needs a hypervolume reference: give max_kl"),
        ({"objectives": ("kl/ref:min", "reward/mean")}, "objectives: kl/ref:min first needs hv_reward"),
        ({"points_to_evaluate": ('{"divergence": "reverse_kl", "beta": 0.1}',)}, "lacks ['learning_rate']"),
        ({"points_to_evaluate": ('{"divergence": "reverse_kl", "beta": -1, "learning_rate": 1e-4}',)}, "beta=-1"),
        ({"resume": True, "overwrite": True}, "contradict"),
        # points to evaluate lie in the searched ranges (beta 0.05-2, lr 2e-4-2e-3, alpha 0.1-0.9), no more than trials
        ({"points_to_evaluate": ('{"divergence": "reverse_kl", "beta": 50, "learning_rate": 1e-3}',)},
         "beta=50.0 is outside the searched range [0.05, 2]"),
        ({"points_to_evaluate": ('{"divergence": "reverse_kl", "beta": 0.1, "learning_rate": 0.5}',)},
         "learning_rate=0.5 is outside the searched range"),
        ({"points_to_evaluate": ('{"divergence": "alpha_divergence", "alpha": 0.99, "beta": 0.1, '
                                 '"learning_rate": 1e-3}',)}, "alpha=0.99 is outside the searched range [0.1, 0.9]"),
        ({"num_trials": 2, "divergences": ("reverse_kl",),
          "points_to_evaluate": tuple(f'{{"divergence": "reverse_kl", "beta": 0.1, "learning_rate": {lr:g}}}'
                                      for lr in (3e-4, 4e-4, 5e-4))},
         "holds 3 points but num_trials=2"),
        # every divergence its share: at least two trials each
        ({"num_trials": 7}, "num_trials=7 is fewer than 2 per divergence (4 divergences"),
        ({"num_trials": 3, "divergences": ("reverse_kl", "forward_kl")}, "give --num-trials 4 or more"),
        # the search's own runs are not a confirmation
        ({"replicates": 0}, "replicates=0 with confirmation_prompts set would call the search's own runs"),
        ({"max_garbled_increase": 0.0}, "max_garbled_increase=0.0 must be > 0"),
        ({"cpus_per_trial": 0.0001}, "cpus_per_trial=0.0001 must be >= 1"),
        ({"storage": "postgresql://sweeper:hunter2@db/studies"}, "holds a password"),
        ({"storage_password_env": "not a name"}, "is not an environment variable's name"),
        ({"replicates": -1}, "replicates=-1 must be >= 0"),
        ({"confirmation_prompts": 1}, "confirmation_prompts=1 gives no interval"),
    ],
)
# fmt: on
def test_bad_sweep_values_are_named(values, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        SweepConfig(**values)


def test_sweep_job_refuses_bad_input_before_ray_and_writes_nothing(tmp_path):
    out, ray_tmp = tmp_path / "exp", tmp_path / "ray-tmp"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(ray_tmp)  # a local Ray started by the job would make its session directory here
    cases = [
        (["--beta-min", "nan"], "beta_min"),
        (["--policy", str(tmp_path / "nowhere")], "has no config.json"),
        (["--resume"], "holds no sweep to resume"),
        (["--confirmation-prompts", "450"], "confirmation_prompts=450 exceed the 500 reviews"),
    ]
    for argv, message in cases:
        run = subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--output", str(out), *argv],
            capture_output=True, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        assert run.returncode != 0 and message in run.stderr, run.stderr
        assert not out.exists()
        said = run.stdout + run.stderr  # the driver's lines once ray.init returns (driver._init_ray)
        assert "[alignray] started a local Ray" not in said and "[alignray] joined the Ray cluster" not in said, said
        assert not ray_tmp.exists(), sorted(ray_tmp.rglob("*"))[:5]


# --- end-to-end on the micro world ------------------------------------------------------------------------------

MICRO_SWEEP = [
    "--num-prompts", "12", "--samples-per-prompt", "3", "--max-new-tokens", "8", "--max-length", "48",
    "--eval-prompts", "8", "--eval-samples-per-prompt", "1", "--batch-size", "4", "--startup-trials", "2",
    "--beta-min", "0.1", "--beta-max", "1.0",
    # the micro policy writes a quarter non-words, and 8 samples a seed make its rates jump by eighths
    "--max-nonword-increase", "0.5", "--max-garbled-increase", "0.5",
    "--confirmation-prompts", "8",
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
            "--judge", str(world / "judge"),
            "--num-trials", "6", "--divergences", "reverse_kl", "forward_kl", "js_divergence",
            "--derive-lambdas", "0.5", "1.5", "--soups", "true", "--points-to-evaluate", point,
            *MICRO_SWEEP]  # fmt: skip
    here = os.getcwd()
    os.chdir(out.parent)  # a relative --output, as users type it: trials run in working directories of their own
    try:
        summary = main(["--output", "exp", *argv[2:]])
    finally:
        os.chdir(here)
    return out, summary, argv


def test_sweep_leaves_results_frontier_study_and_models(sweep):
    from test_report import _dominated_area

    out, summary, _ = sweep
    table = pd.read_parquet(out / "results.parquet")
    trials = table[table["kind"] == "trial"]
    assert len(trials) == 6 and table["trial"].is_unique and summary["candidates"]["trial"] == 6
    # each divergence its share: two trials each
    assert trials["divergence"].value_counts().to_dict() == {"reverse_kl": 2, "forward_kl": 2, "js_divergence": 2}
    ok = table[table["status"] == "ok"]  # every candidate: final models, points along them, derived ones
    feasible = ok[ok["feasible"]]  # the frontier holds feasible candidates only (forward_kl's NaN trials are not)
    points = feasible[["reward/mean", DIVERSITY]].to_numpy()
    np.testing.assert_array_equal(feasible["pareto"].to_numpy(), _brute_force_front(points))
    assert not table.loc[~table["feasible"], "pareto"].any()
    assert sorted(table.loc[table["pareto"], "trial"]) == sorted(summary["search_frontier"])
    assert set(table["kind"]) == {"trial", "point", "derived"}
    for trial in summary["search_frontier"]:  # trained and derived alike
        assert (out / "frontier" / trial / "model" / "model.safetensors").is_file()
        samples = pd.read_parquet(out / "frontier" / trial / "samples.parquet")
        assert {"prompt_id", "completion", "reward", "tokens"} <= set(samples.columns) and len(samples) == 8
    base = json.loads((out / "base" / "metrics.json").read_text())["metrics"]
    reference = (base["reward/mean"], 0.95 * base[DIVERSITY])  # default: base reward, 95% of its diversity
    assert summary["reference_point"] == pytest.approx(list(reference))
    assert summary["hypervolume"] == pytest.approx(_dominated_area(points, reference), rel=1e-9, abs=1e-12)
    first = trials.sort_values("index").iloc[0]  # the point to evaluate runs first, before the sampler's picks
    assert (first["divergence"], first["beta"], first["learning_rate"]) == ("forward_kl", 0.5, 1e-3)
    assert (out / "report.md").read_text().count("base (SFT)") == 1
    assert sorted(p.stem for p in (out / "samples").glob("*.parquet")) == sorted(ok["trial"])
    # timings are reported beside the metrics
    done = trials[trials["status"] == "ok"]
    assert (done["time/train_s"] > 0).all() and (done["time/eval_s"] > 0).all()


def test_the_judge_scores_every_kind_of_candidate_every_confirmation_seed_and_the_base(sweep):
    """judge/mean and judge/frac_positive beside the reward wherever an evaluation is recorded: trials, points along
    training, derived candidates, the base policy, each confirmation seed; they are the judge's own (the means of
    its per-sample scores, which are not the reward's), and the report shows them."""
    out, summary, _ = sweep
    judge = ["judge/mean", "judge/frac_positive"]
    table = pd.read_parquet(out / "results.parquet")
    ok = table[table["status"] == "ok"]
    assert set(ok["kind"]) == {"trial", "point", "derived"} and ok[judge].notna().all().all()
    for _, row in ok.iterrows():
        samples = pd.read_parquet(out / "samples" / f"{row['trial']}.parquet")
        assert samples["judge"].mean() == pytest.approx(row["judge/mean"], rel=1e-5, abs=1e-6)
        assert samples["judge_positive"].mean() == pytest.approx(row["judge/frac_positive"])
        assert not np.allclose(samples["judge"], samples["reward"])
    base = json.loads((out / "base" / "metrics.json").read_text())["metrics"]
    assert set(judge) <= set(base)
    seeds = pd.read_parquet(out / "confirmation.parquet")
    assert seeds[judge].notna().all().all() and "base" in set(seeds["trial"])
    assert table.loc[table["confirm"], "confirmed/judge/mean"].notna().all()
    report = (out / "report.md").read_text()
    assert "judge/mean" in report and "Judge: judge vs base" in report


def test_trajectory_points_are_tagged_with_their_trial_and_step(sweep):
    """eval_points 2 (the default): each finished trial's final model and a model halfway through its training, each
    its own candidate named <trial>@<step>, evaluated on the same prompts."""
    out, _, _ = sweep
    table = pd.read_parquet(out / "results.parquet")
    for _, final in table[(table["kind"] == "trial") & (table["status"] == "ok")].iterrows():
        assert final["tune_trial"] == final["trial"] and final["step"] == final["train/step"] > 0
        points = table[(table["kind"] == "point") & (table["tune_trial"] == final["trial"])]
        steps = sorted(points["step"])
        assert steps == [math.ceil(final["step"] / 2)]  # eval_points 2 (the default): halfway, then the end
        assert list(points["trial"]) == [f"{final['trial']}@{int(s)}" for s in points["step"]]
        assert (points["status"] == "ok").all()
        samples = [pd.read_parquet(out / "samples" / f"{t}.parquet") for t in [*points["trial"], final["trial"]]]
        assert all(list(s["prompt"]) == list(samples[-1]["prompt"]) for s in samples)  # the same prompts
        assert samples[0]["completion"].tolist() != samples[-1]["completion"].tolist() or (
            points["kl/ref"].iloc[0] != final["kl/ref"])  # another model  # fmt: skip
    # errored trials have no points
    errored = table[(table["kind"] == "trial") & (table["status"] != "ok")]
    assert len(errored) and (table.loc[table["tune_trial"].isin(errored["trial"]), "kind"] == "trial").all()


def test_derived_candidates_carry_their_recipe_and_are_judged_like_trials(sweep):
    out, summary, _ = sweep
    table = pd.read_parquet(out / "results.parquet")
    derived = table[table["kind"] == "derived"]
    assert len(derived) == summary["candidates"]["derived"] > 0
    trained = table[table["kind"] != "derived"].set_index("trial")
    for _, row in derived.iterrows():
        parents = list(row["parents"])
        assert set(parents) <= set(trained.index) and trained.loc[parents, "feasible"].all()
        if len(parents) == 1:
            assert row["trial"] == f"{parents[0]}~x{row['lambda']:g}" and row["lambda"] in (0.5, 1.5)
        else:  # a soup of two frontier neighbours from different trials
            assert list(row["weights"]) == [0.5, 0.5] and trained.loc[parents, "tune_trial"].nunique() == 2
        assert pd.isna(row["tune_trial"]) and row["recipe"]
    # judged like trials: feasible exactly when within every bound the sweep recorded, on the derived model's own
    # figures (a derived row that skipped the constraints, or took its parents', would fail this)
    ok = derived[derived["status"] == "ok"]
    within = [all(row[m] <= bound for m, bound in summary["constraints"].items()) for _, row in ok.iterrows()]
    assert len(ok) and ok["feasible"].tolist() == within
    assert not ok[["kl/ref", "reward/mean"]].duplicated().any()  # each evaluated as a model of its own


def test_the_frontier_and_each_divergences_best_are_confirmed_with_fresh_seeds_on_held_out_prompts(sweep):
    """Confirmation: the search frontier and each divergence's best, each at two fresh seeds and at its search run,
    and the base policy, on 8 prompts that share no text with the search's 8 or the preference data's; the
    confirmed figures are the fresh seeds' means, and the report's frontier (pareto.csv, the summary) is the
    confirmed one."""
    from test_report import _dominated_area

    from alignray.data.pipeline import load_prompts
    from alignray.metrics import evaluation_prompts
    from alignray.sweep.checks import load_resumed

    out, summary, argv = sweep
    table = pd.read_parquet(out / "results.parquet")
    searched = sorted(table.loc[table["confirm"], "trial"])
    assert set(table.loc[table["pareto"], "trial"]) <= set(searched)
    feasible = table[table["feasible"] & (table["kind"] != "derived")]
    for divergence, rows in feasible.groupby("divergence"):  # each divergence's best in reward is confirmed
        assert rows.sort_values("reward/mean").iloc[-1]["trial"] in searched, divergence
    seeds = pd.read_parquet(out / "confirmation.parquet")
    assert len(seeds) == 1 + 3 * len(searched) and (seeds["status"] == "ok").all()
    assert sorted(seeds.loc[seeds["retrained"], "trial"]) == sorted(searched * 2) and set(seeds["seed"]) == {0, 1, 2}
    assert not seeds.loc[seeds["seed"] == 0, "retrained"].any()  # the search's own run: seed 0, not fresh
    fresh = seeds[seeds["retrained"]]
    means = fresh.groupby("trial")["reward/mean"].mean()
    confirmed = table.set_index("trial").loc[searched]
    np.testing.assert_allclose(confirmed["confirmed/reward/mean"], means.loc[searched])  # fresh seeds alone
    search_run = seeds[~seeds["retrained"] & (seeds["trial"] != "base")].set_index("trial")["reward/mean"]
    np.testing.assert_allclose(confirmed["confirmed/search_run/reward/mean"], search_run.loc[searched])
    assert (confirmed["confirmed/seeds"] == 2).all()
    # a fresh seed trains its run anew (the search's run is read from its checkpoint); a derived candidate is built
    # from its parents' fresh runs, in a task that trains nothing
    kinds = table.set_index("trial")["kind"]
    trained = seeds["trial"].map(kinds).isin(["trial", "point"])
    assert (fresh.loc[trained, "time/train_s"] > 0).all()
    assert (seeds.loc[~seeds["retrained"] | ~trained, "time/train_s"] == 0).all()
    # held-out prompts: the search's 8 are the first of one seeded draw, the confirmation's the next 8 others
    policy = argv[argv.index("--policy") + 1]
    drawn = evaluation_prompts(policy, 60, 0)
    preference = load_prompts(load_resumed(SweepConfig(output=str(out), resume=True)).preference_config("-"))
    search, held_out = (list(pd.read_parquet(out / path).drop_duplicates("prompt_id")["prompt"])
                        for path in ("base/samples.parquet", "confirm/base/samples.parquet"))  # fmt: skip
    assert search == drawn[:8] and len(held_out) == 8
    assert not set(held_out) & set(search) and not set(held_out) & set(preference)
    assert held_out == [p for p in dict.fromkeys(drawn[8:]) if p not in set(search) | set(preference)][:8]
    # the final frontier: confirmed, feasible, Pareto-optimal at the confirmed figures, within the search's
    final = table[table["confirmed/pareto"]]
    front = pd.read_csv(out / "pareto.csv")
    assert sorted(front["trial"]) == sorted(final["trial"]) == sorted(summary["frontier"])
    assert set(summary["frontier"]) <= set(searched) and final["confirmed/feasible"].all()
    feasible = table[table["confirmed/feasible"]]
    points = feasible[["confirmed/reward/mean", f"confirmed/{DIVERSITY}"]].to_numpy()
    np.testing.assert_array_equal(feasible["confirmed/pareto"].to_numpy(), _brute_force_front(points))
    base = json.loads((out / "confirm" / "base" / "metrics.json").read_text())["metrics"]
    reference = (base["reward/mean"], 0.95 * base[DIVERSITY])
    assert summary["confirmation"]["reference_point"] == pytest.approx(list(reference))
    assert summary["confirmation"]["hypervolume"] == pytest.approx(_dominated_area(points, reference), abs=1e-12)
    report = (out / "report.md").read_text()
    assert "## Confirmation" in report and "## The answer per divergence" in report
    assert report.index("## The answer per divergence") < report.index("![")  # before any figure
    assert f"The confirmed frontier holds {len(final)} of the {len(searched)}" in report
    answers = pd.read_csv(out / "answer.csv")
    assert list(answers["divergence"]) == ["reverse_kl", "forward_kl", "js_divergence"]
    # forward_kl's trials meet a NaN (the fault injected for this module): no answer, said so
    assert answers.set_index("divergence").loc["forward_kl", "answer"].startswith("none: no feasible candidate")


def test_trials_run_one_after_another_in_reused_workers(tmp_path, micro_world, ray_cluster):
    """reuse_workers (the default): four trials, two at a time, run in the two worker processes the first two started,
    not in four fresh ones (the per-trial start-up that bench/overhead.py measures)."""
    from jobs.sweep import main

    world, _ = micro_world
    out = tmp_path / "exp"
    main(["--output", str(out), "--policy", str(world / "policy"), "--reward", str(world / "reward"),
          "--judge", str(world / "judge"),
          "--num-trials", "4", "--divergences", "reverse_kl", "js_divergence", "--confirmation-prompts", "0",
          *MICRO_SWEEP[:-2]])  # fmt: skip
    table = pd.read_parquet(out / "results.parquet")
    table = table[table["kind"] == "trial"]
    assert (table["status"] == "ok").all() and len(table) == 4
    assert table["worker/pid"].nunique() <= 2, table[["trial", "worker/pid"]]


def test_nan_trial_is_errored_with_its_reason_and_failed_in_the_study(sweep):
    out, summary, _ = sweep
    table = pd.read_parquet(out / "results.parquet")
    table = table[table["kind"] == "trial"]
    forward = table[table["divergence"] == "forward_kl"]
    assert len(forward) >= 1 and (forward["status"] == "error").all()
    assert forward["reason"].str.contains("non-finite objectives").all()
    assert (table.loc[table["divergence"] != "forward_kl", "status"] == "ok").all()
    assert summary["errors"] == len(forward)

    study_name = json.loads((out / "sweep.json").read_text())["study"]
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 6
    assert states.count(optuna.trial.TrialState.FAIL) == len(forward)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 6 - len(forward) and all(len(t.values) == 2 for t in complete)
    ok = table[table["status"] == "ok"]
    assert sorted(v[0] for v in (t.values for t in complete)) == pytest.approx(sorted(ok["reward/mean"]))


def test_existing_experiment_is_refused_without_resume_or_overwrite(sweep):
    out, _, argv = sweep
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "sweep.py"), *argv], capture_output=True, text=True)
    assert run.returncode != 0 and "already holds the sweep" in run.stderr and "--resume" in run.stderr


def test_resume_after_the_driver_is_killed_adds_no_duplicates(tmp_path, micro_world, ray_cluster):
    """The driver dies right after Tune recorded the first trial's checkpoint, while that trial still reads RUNNING in
    Tune's saved state: the resumed sweep restores the trial from its checkpoint, and the trial must report it again,
    not train a second time (a retrained trial keeps its id: only its timings tell)."""
    from test_report import _dominated_area

    from jobs.sweep import main

    die_after_the_first_save = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ray.tune.execution.tune_controller import TuneController\n"
        "from jobs.sweep import main\n"
        "process_save = TuneController._process_trial_save\n"
        "def save_then_hang(self, trial, result):\n"
        "    process_save(self, trial, result)\n"
        "    self.checkpoint(force=True, wait=True)\n"  # Tune's saved state: the trial RUNNING, with its checkpoint
        "    Path(sys.argv[1]).write_text(trial.trial_id)\n"
        "    time.sleep(3600)\n"
        "TuneController._process_trial_save = save_then_hang\n"
        "main(sys.argv[2:])\n"
    )
    world, _ = micro_world
    out, saved, log = tmp_path / "exp", tmp_path / "saved", tmp_path / "driver.log"
    argv = ["--output", str(out), "--policy", str(world / "policy"), "--reward", str(world / "reward"),
            "--judge", str(world / "judge"),
            "--num-trials", "4", "--max-concurrent-trials", "1", "--divergences", "reverse_kl",
            "js_divergence", "--hv-reward", "-10", *MICRO_SWEEP]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    with log.open("w") as output:
        driver = subprocess.Popen(
            [sys.executable, "-c", die_after_the_first_save, str(saved), *argv], env=env, cwd=ROOT,
            start_new_session=True, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not saved.is_file() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(0.5)  # the marker is written whole before the driver sleeps
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert saved.is_file(), f"no trial was saved before the deadline:\n{log.read_text()[-3000:]}"
    first_trial = saved.read_text()
    (checkpoint,) = out.glob(f"tune/*/run_trial_{first_trial}_*/checkpoint_*/metrics.json")
    reported = json.loads(checkpoint.read_text())

    summary = main(["--output", str(out), "--resume"])
    results = pd.read_parquet(out / "results.parquet")
    table = results[results["kind"] == "trial"].sort_values("index")
    assert len(table) == 4 and table["trial"].is_unique and summary["trials"] == 4
    assert (table["status"] == "ok").all()
    restored = table.set_index("trial").loc[first_trial]
    for key in ("time/train_s", "time/eval_s", "time/total_s"):  # a second training run takes other seconds
        assert restored[key] == pytest.approx(reported[key], rel=1e-12), f"{first_trial} was trained again: {key}"
    # every divergence first, at the seed points (a Latin hypercube over β x lr); the sampler's picks after them
    from alignray.sweep.space import seed_points

    expected = seed_points(SweepConfig(beta_min=0.1, beta_max=1.0, divergences=("reverse_kl", "js_divergence")))
    seeds = table.head(2)
    assert list(seeds["divergence"]) == ["reverse_kl", "js_divergence"] and seeds["trial"].iloc[0] == first_trial
    assert list(seeds["beta"]) == pytest.approx([p["beta"] for p in expected])
    assert list(seeds["learning_rate"]) == pytest.approx([p["learning_rate"] for p in expected])
    study = optuna.load_study(
        study_name=json.loads((out / "sweep.json").read_text())["study"], storage=f"sqlite:///{out / 'study.db'}"
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4  # none left RUNNING or WAITING
    # --hv-reward puts the reference point below the trials, which on the micro world score as the base policy does
    # (the default reference, the base's reward, would give every sweep there a hypervolume of 0)
    base = json.loads((out / "base" / "metrics.json").read_text())["metrics"]
    reference = (-10.0, 0.95 * base[DIVERSITY])
    assert summary["reference_point"] == pytest.approx(list(reference))
    area = _dominated_area(results[["reward/mean", DIVERSITY]].to_numpy(), reference)
    assert area > 0 and summary["hypervolume"] == pytest.approx(area, rel=1e-9)


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
    assert [("alpha" in p) for p in points] == [False, False, False, True] and 0.1 <= points[3]["alpha"] <= 0.9
    # a Latin hypercube in the cautious corner, in log space: β in the upper half, the learning rate in the lower
    # half, each start point in its own eighth of the range, so no two share a stratum
    for name, low, high, half in (("beta", 0.01, 1.0, [4, 5, 6, 7]), ("learning_rate", 1e-4, 1e-2, [0, 1, 2, 3])):
        strata = sorted(int(8 * np.log(p[name] / low) / np.log(high / low)) for p in points)
        assert strata == half, (name, [p[name] for p in points])
    assert seed_points(config) == points  # seeded: the same config gives the same seeds
    assert seed_points(dataclasses.replace(config, seed=1)) != points
    assert len(seed_points(SweepConfig(num_trials=2, divergences=("reverse_kl",)))) == 1
    point = '{"divergence": "gan", "beta": 0.3, "learning_rate": 1e-3}'
    given = SweepConfig(divergences=("reverse_kl", "gan"), points_to_evaluate=(point,))
    first, added = seed_points(given)  # the point given, then a start point for the divergence it leaves out
    assert first == {"divergence": "gan", "beta": 0.3, "learning_rate": 1e-3} and added["divergence"] == "reverse_kl"
    assert 0.05 * 2 <= added["beta"] ** 2 and added["learning_rate"] ** 2 <= 1e-4 * 1e-3  # in the cautious corner
    with pytest.raises(ValueError, match="divergence='gan' is outside the searched divergences"):
        SweepConfig(points_to_evaluate=(point,))  # Optuna would refuse it inside the search, after the data stage
    assert len(seed_points(SweepConfig(search="grid"))) == 16


def test_sweep_report_and_study_through_optunas_api(sweep):
    out, summary, _ = sweep
    for name in ("report.md", "report.html", "pareto.png", "rewards.png", "hypervolume.png"):
        assert (out / name).is_file(), name
    assert (out / "report.md").read_text().count("| base (SFT) |") == 1
    table = pd.read_parquet(out / "results.parquet")
    ok = table[(table["status"] == "ok") & (table["kind"] == "trial")]
    samples = pd.read_parquet(out / "samples" / f"{ok['trial'].iloc[0]}.parquet")
    assert "completion_ids" in samples.columns  # token-metric intervals need them
    # the live view: optuna-dashboard reads this storage; every finished trial is listed with both objectives
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{out / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == len(ok)
    values = sorted(tuple(t.values) for t in complete)
    expected = sorted(zip(ok["reward/mean"], ok[DIVERSITY], strict=True))
    assert np.asarray(values) == pytest.approx(np.asarray(expected))
    # every finished trial's directory holds its training curves (TensorBoard events in its checkpoint, whether its
    # worker was fresh or reused) beside Tune's own
    for trial in ok["trial"]:
        (directory,) = out.glob(f"tune/*/run_trial_{trial}_*")
        assert list(directory.glob("events.out.tfevents.*")), directory
        assert list(directory.glob("checkpoint_*/tensorboard/**/events.out.tfevents.*")), directory


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


# --- issue 13: scratch, bookkeeping, failures, resume with more trials ---------------------------------------------


def test_trials_leave_no_model_or_preference_copy_in_the_tune_directory(sweep):
    out, _, _ = sweep
    from alignray.sweep.derive import model_path

    table = pd.read_parquet(out / "results.parquet")
    trained = table[table["kind"] != "derived"].set_index("trial", drop=False)
    # exactly the models something still needs: those derived candidates are made from (the trained frontier), those
    # confirmation evaluates the search's run of, and the parents of derived frontier models; no other, none fewer
    kept = trained[trained["trained_pareto"] | trained["confirm"]]
    parents = [p for ps in table.loc[table["pareto"] & (table["kind"] == "derived"), "parents"] for p in ps]
    expected = {(row["tune_trial"], model_path(row)) for _, row in pd.concat([kept, trained.loc[parents]]).iterrows()}
    found = set()
    for path in (out / "tune").rglob("model.safetensors"):
        parts = path.relative_to(out / "tune").parts
        at = next(i for i, part in enumerate(parts) if part.startswith("checkpoint_"))
        found.add((parts[1].split("_")[2], "/".join(parts[at + 1 : -1])))
    assert found == expected
    assert not list((out / "tune").rglob("preferences.parquet"))
    assert not list((out / "tune").rglob("alignray-trial-*"))


def test_results_and_study_join_both_ways(sweep):
    from alignray.sweep.searcher import TUNE_TRIAL_ATTR

    out, summary, _ = sweep
    results = pd.read_parquet(out / "results.parquet")
    table = results[results["kind"] == "trial"]
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{out / 'study.db'}")
    by_number = {t.number: t for t in study.trials}
    assert table["optuna_trial"].notna().all() and table["optuna_trial"].is_unique
    # the sampler's history is the study: one trial per Tune trial, told its final model; no point along a training
    # and no derived candidate is in it
    assert results.loc[results["kind"] != "trial", "optuna_trial"].isna().all()
    assert sorted(t.user_attrs[TUNE_TRIAL_ATTR] for t in study.trials) == sorted(table["trial"])
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            final = table.set_index("trial").loc[trial.user_attrs[TUNE_TRIAL_ATTR]]
            assert trial.values[0] == pytest.approx(final["reward/mean"])
    for _, row in table.iterrows():
        trial = by_number[int(row["optuna_trial"])]
        assert trial.user_attrs[TUNE_TRIAL_ATTR] == row["trial"]
        assert trial.params["divergence"] == row["divergence"]
        assert trial.params[f"{row['divergence']}.beta"] == pytest.approx(row["beta"])  # its divergence's own


def test_a_storage_password_comes_from_the_environment_and_is_never_pickled(tmp_path, monkeypatch):
    import pickle

    from alignray.sweep.driver import _searcher
    from alignray.sweep.searcher import study_storage_url

    config = SweepConfig(storage="postgresql://sweeper@db.internal/studies", storage_password_env="ALIGNRAY_PW")
    monkeypatch.delenv("ALIGNRAY_PW", raising=False)
    with pytest.raises(ValueError, match="export ALIGNRAY_PW="):
        study_storage_url(config)
    monkeypatch.setenv("ALIGNRAY_PW", "hunter2")
    assert study_storage_url(config) == "postgresql://sweeper:hunter2@db.internal/studies"
    assert "hunter2" not in json.dumps(dataclasses.asdict(config))
    # Tune pickles the searcher (tuner.pkl, searcher state): the opened storage (whose URL holds the password) stays
    # out, and is opened again from the config when unpickled
    local = SweepConfig(output=str(tmp_path / "exp"), storage=f"sqlite:///{tmp_path / 'study.db'}")
    searcher = _searcher(local, "alignray-0123abcd", seeded=False)
    searcher.suggest("aaaa1111")
    for blob in (pickle.dumps(searcher), _saved(searcher, tmp_path)):
        assert b"RDBStorage" not in blob and b"optuna.study" not in blob and b"optuna.trial" not in blob
    restored = pickle.loads(pickle.dumps(searcher))
    restored.on_trial_complete("aaaa1111", dict(zip(local.objectives, (1.0, 2.0), strict=True)))
    params = restored.suggest("bbbb2222")
    assert params["divergence"] in local.divergences
    study = optuna.load_study(study_name="alignray-0123abcd", storage=local.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"]
    assert study.trials[0].values == [1.0, 2.0] and study.trials[1].user_attrs["tune_trial_id"] == "bbbb2222"


def _saved(searcher, tmp_path) -> bytes:
    searcher.save(str(tmp_path / "searcher.pkl"))
    return (tmp_path / "searcher.pkl").read_bytes()


def test_errors_that_repeat_are_recorded_and_others_retried():
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    from alignray.sweep.trial import TrialFailed, is_deterministic

    assert is_deterministic(FloatingPointError("non-finite loss")) and is_deterministic(ValueError("bad"))
    assert is_deterministic(TrialFailed("again"))
    assert not is_deterministic(RuntimeError("CUDA out of memory"))
    wrapped = RayTaskError("train", "traceback", FloatingPointError("nan")).as_instanceof_cause()
    assert is_deterministic(wrapped)
    # a multi-worker trial's NaN: every worker that failed met a non-finite number
    assert is_deterministic(WorkerGroupError("w", {0: FloatingPointError("nan"), 1: FloatingPointError("nan")}))
    assert not is_deterministic(WorkerGroupError("w", {0: FloatingPointError("nan"), 1: RuntimeError("died")}))


def test_a_failure_is_recorded_where_any_worker_of_a_retry_finds_it(tmp_path):
    """Failures live under the experiment by trial id, not in the trial's directory (Tune places it differently for a
    fresh worker and a reused one, and on another node)."""
    from alignray.sweep.trial import Failures

    storage = str(tmp_path / "exp" / "failures")
    assert Failures(storage, "abc12").read() is None
    Failures(storage, "abc12").record("FloatingPointError: non-finite loss", {"beta": 0.1})
    assert Failures(storage, "abc12").read() == "FloatingPointError: non-finite loss"  # a new worker reads it
    assert Failures(f"file://{storage}", "abc12").read() == "FloatingPointError: non-finite loss"  # a URI alike
    assert Failures(storage, "def34").read() is None
    assert json.loads((tmp_path / "exp" / "failures" / "abc12.json").read_text())["params"] == {"beta": 0.1}


def test_quiet_libraries_hides_future_warnings_and_loading_bars():
    import warnings

    import transformers

    from alignray.world import quiet_libraries

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn("deprecated soon", FutureWarning, stacklevel=1)
        warnings.warn("a real problem", RuntimeWarning, stacklevel=1)
    assert [w.category for w in caught] == [RuntimeWarning]
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert transformers.utils.logging.get_verbosity() == transformers.utils.logging.ERROR


def test_a_trial_that_cannot_fit_is_refused_once_ray_is_up_and_leaves_nothing(tmp_path, micro_world, ray_cluster):
    from alignray.sweep.driver import SweepRefused, run_sweep

    world, _ = micro_world
    out = tmp_path / "exp"
    config = SweepConfig(output=str(out), policy=str(world / "policy"), reward=str(world / "reward"),
                         judge=str(world / "judge"),
                         workers_per_trial=64, eval_prompts=8)  # fmt: skip
    with pytest.raises(SweepRefused, match="one trial needs 65.0 CPUs"):
        run_sweep(config)
    assert not out.exists()


def test_resume_refuses_changed_options_and_only_grows(sweep):
    from alignray.config import given_fields, parse_config
    from alignray.sweep.checks import load_resumed
    from alignray.sweep.config import SWEEP_PRESETS

    out, _, _ = sweep

    def resumed(*argv):
        argv = ["--output", str(out), "--resume", *argv]
        config = parse_config(SweepConfig, argv, presets=SWEEP_PRESETS)
        return load_resumed(config, given_fields(SweepConfig, argv, SWEEP_PRESETS))

    assert resumed().num_trials == 6 and resumed().num_prompts == 12  # the saved settings, not the defaults
    grown = resumed("--num-trials", "8", "--max-failures", "3")
    assert (grown.num_trials, grown.max_failures, grown.num_prompts) == (8, 3, 12)
    with pytest.raises(ValueError, match="--preset cannot be given with --resume"):
        resumed("--preset", "gpt2-imdb")  # its 32 trials and 600 prompts would otherwise slip in
    assert resumed("--num-prompts", "12").num_prompts == 12  # the same value is no change
    with pytest.raises(ValueError, match=r"num_prompts=99 differs from the resumed sweep's num_prompts=12"):
        resumed("--num-prompts", "99")
    with pytest.raises(ValueError, match="a sweep can grow, not shrink"):
        resumed("--num-trials", "5")


def test_resume_refuses_a_base_policy_whose_weights_changed(sweep, capsys):
    """sweep.json records the base policy's weights fingerprint; a resume from other weights (a rebuilt world, a
    moved hub revision) is refused before anything runs: its trials' task vectors were taken from the old ones."""
    from alignray.world import load_policy, weights_fingerprint
    from jobs.sweep import main

    out, _, argv = sweep
    record = json.loads((out / "sweep.json").read_text())
    policy = argv[argv.index("--policy") + 1]
    assert record["base_fingerprint"] == weights_fingerprint(load_policy(policy, device="cpu")[0])
    moved = {**record, "base_fingerprint": "0123456789abcdef"}
    (out / "sweep.json").write_text(json.dumps(moved))
    try:
        with pytest.raises(SystemExit) as exit_code:
            main(["--output", str(out), "--resume"])
        assert exit_code.value.code == 2
        assert "was started from weights with fingerprint 0123456789abcdef" in capsys.readouterr().err
        assert json.loads((out / "sweep.json").read_text()) == moved  # nothing was written
    finally:
        (out / "sweep.json").write_text(json.dumps(record, indent=2) + "\n")


def test_resume_with_more_trials_adds_them_to_the_same_study(sweep):
    """Runs last among the tests of ``sweep``: it adds a trial to that experiment."""
    from jobs.sweep import main

    out, summary, _ = sweep
    before = pd.read_parquet(out / "results.parquet")
    extended = main(["--output", str(out), "--resume", "--num-trials", "9"])
    table = pd.read_parquet(out / "results.parquet")
    before, table = before[before["kind"] == "trial"], table[table["kind"] == "trial"]
    assert extended["trials"] == 9 and len(table) == 9 and table["trial"].is_unique
    # the added three go one to each divergence: the balance holds across the two Tune experiments
    assert table["divergence"].value_counts().to_dict() == {"reverse_kl": 3, "forward_kl": 3, "js_divergence": 3}
    kept = table.set_index("trial").loc[before["trial"]]
    np.testing.assert_allclose(kept["time/train_s"].fillna(-1), before["time/train_s"].fillna(-1))  # not retrained
    assert table["index"].tolist() == list(range(1, 10))  # the added experiment's trials follow the first six
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 9
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    assert sorted(table["optuna_trial"]) == [t.number for t in study.trials]
    assert json.loads((out / "sweep.json").read_text())["config"]["num_trials"] == 9


def test_yaml_points_are_read_as_numbers_and_a_home_path_is_expanded(tmp_path):
    import yaml

    from alignray.config import parse_config
    from alignray.sweep.config import SWEEP_PRESETS

    path = tmp_path / "sweep.yaml"
    path.write_text("output: ~/alignray-sweeps/a\npoints_to_evaluate:\n"
                    "  - {divergence: alpha_divergence, alpha: 0.3, beta: 0.1, learning_rate: 5e-4}\n"
                    "  - {divergence: reverse_kl, alpha: null, beta: 1, learning_rate: 1e-3}\n")  # fmt: skip
    assert yaml.safe_load(path.read_text())["points_to_evaluate"][0]["learning_rate"] == "5e-4"  # a string to YAML
    config = parse_config(SweepConfig, ["--config", str(path)], presets=SWEEP_PRESETS)
    points = [json.loads(point) for point in config.points_to_evaluate]
    assert points[0] == {"divergence": "alpha_divergence", "alpha": 0.3, "beta": 0.1, "learning_rate": 0.0005}
    assert points[1] == {"divergence": "reverse_kl", "beta": 1.0, "learning_rate": 0.001}
    assert config.output == str(Path.home() / "alignray-sweeps" / "a")


def test_an_output_this_user_cannot_enter_is_refused_in_one_line(tmp_path, monkeypatch):
    from alignray.sweep import checks

    def denied(config):
        raise PermissionError(13, "Permission denied", str(tmp_path / "private"))

    monkeypatch.setattr(checks, "_check_output", denied)
    with pytest.raises(ValueError, match=r"output=.* cannot be used \(Permission denied: .*private\)"):
        checks.check_output(SweepConfig(output=str(tmp_path / "private" / "sweep")))


def test_a_multi_worker_trials_train_run_is_deleted_once_reported(tmp_path):
    from alignray.sweep.trial import drop_train_run

    run = tmp_path / "train" / "0123abcd" / "checkpoint_000000" / "checkpoint"
    run.mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "train" / "other").mkdir()
    drop_train_run(str(tmp_path / "train"), "0123abcd")
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["other"]
    drop_train_run(str(tmp_path / "train"), "0123abcd")  # already gone: nothing to do


def test_a_multi_worker_trial_failing_after_training_leaves_no_train_run(tmp_path, monkeypatch):
    """Its Ray Train run holds k + 1 full models; a failure after training (here in evaluation) must not leave them
    on disk: the retry trains again under the same name."""
    from ray import tune

    import alignray.sweep.trial as trial

    storage = tmp_path / "train"
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t0001"))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)

    def trained_then_failed(params, config, data, prompts, scratch, train_storage, failure):
        (Path(train_storage) / "t0001" / "checkpoint_000001" / "model").mkdir(parents=True)
        raise RuntimeError("evaluation failed after training")

    monkeypatch.setattr(trial, "_train_and_evaluate", trained_then_failed)
    config = SweepConfig(workers_per_trial=2, eval_prompts=8)
    with pytest.raises(RuntimeError, match="after training"):
        trial.run_trial({"divergence": "reverse_kl"}, config, pd.DataFrame({"x": [1]}), [], str(storage),
                        str(tmp_path / "failures"))  # fmt: skip
    assert storage.is_dir() and not (storage / "t0001").exists()


def test_a_point_that_errors_is_its_own_errored_row_and_its_trial_stands(monkeypatch, tmp_path):
    """A deterministic error evaluating one point along training errors that point only, with its reason; a
    transient one (a dead worker) still fails the trial, which Tune retries."""
    import alignray.sweep.trial as trial
    from alignray.sweep.frontier import collect_results

    def evaluate(model, config, prompts, seed):
        if model.endswith("step-4"):
            raise ValueError("the point's weights hold NaN")
        return {"reward/mean": 1.0, DIVERSITY: 5.0}, pd.DataFrame()

    monkeypatch.setattr(trial, "evaluate_model", evaluate)
    evaluated, errored = trial.evaluate_points(tmp_path, [4, 8], SweepConfig(), [])
    assert [step for step, *_ in evaluated] == [8] and errored == [(4, "ValueError: the point's weights hold NaN")]

    def dead(model, config, prompts, seed):
        raise ConnectionError("worker died")

    monkeypatch.setattr(trial, "evaluate_model", dead)
    with pytest.raises(ConnectionError):
        trial.evaluate_points(tmp_path, [4], SweepConfig(), [])
    # the trial's checkpoint records the errored point with its reason; the results give it its own row
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "points.json").write_text(json.dumps([
        {"step": 4, "metrics": {}, "reason": errored[0][1]},
        {"step": 8, "metrics": {"reward/mean": 0.9, DIVERSITY: 5.1}}]))  # fmt: skip
    from ray.tune import Checkpoint

    result = SimpleNamespace(error=None, metrics={"reward/mean": 1.0, DIVERSITY: 5.0, "train/step": 12.0},
                             checkpoint=Checkpoint.from_directory(str(checkpoint)), path=str(tmp_path / "t1"),
                             config={"divergence": "reverse_kl", "beta": 0.5, "learning_rate": 1e-3})  # fmt: skip
    table = collect_results([[result]], SweepConfig()).set_index("trial")
    assert table.loc["t1", "status"] == "ok" and table.loc["t1@8", "status"] == "ok"
    assert table.loc["t1@4", "status"] == "error" and table.loc["t1@4", "reason"] == errored[0][1]


# --- issue 15: constraints ----------------------------------------------------------------------------------------


def _constraints():
    from alignray.sweep.constraints import sweep_constraints

    return sweep_constraints(SweepConfig(max_kl=10.0, max_nonword_increase=0.05, max_garbled_increase=None),
                             {"fluency/nonword_rate": 0.11})  # fmt: skip


def test_constraints_are_the_kl_budget_and_the_fluency_bounds_over_the_base():
    from alignray.sweep.constraints import Constraint, sweep_constraints

    assert _constraints() == [Constraint("kl/ref", 10.0), Constraint("fluency/nonword_rate", pytest.approx(0.16))]
    base = {"fluency/nonword_rate": 0.11, "fluency/garbled_rate": 0.01}
    assert sweep_constraints(SweepConfig(), base)[2] == Constraint("fluency/garbled_rate", pytest.approx(0.05))
    assert sweep_constraints(SweepConfig(max_kl=None, max_nonword_increase=None, max_garbled_increase=None), {}) == []
    with pytest.raises(ValueError, match="base policy's fluency/garbled_rate is nan"):  # never "always feasible"
        sweep_constraints(SweepConfig(), {"fluency/nonword_rate": 0.11, "fluency/garbled_rate": float("nan")})
    kl = Constraint("kl/ref", 10.0)
    assert kl.value({"kl/ref": 32.5}) == pytest.approx(22.5) and kl.value({"kl/ref": 4.0}) == pytest.approx(-6.0)
    assert kl.value({}) == np.inf and kl.value({"kl/ref": float("nan")}) == np.inf


def test_the_tail_bound_excludes_a_normal_mean_with_a_heavy_tail():
    """A candidate whose non-word rate is no worse than the base's on average but which writes gibberish now and then
    breaks the tail bound; one with the base's mean spread over its completions does not."""
    from alignray.metrics import metrics_from_samples
    from alignray.sweep.constraints import sweep_constraints, violations

    vocabulary = {"good", "film", "fine", "plot"}
    real = "good film fine plot good film fine plot good film"

    def samples(texts: list[str]) -> pd.DataFrame:
        n = len(texts)
        return pd.DataFrame({"completion": texts, "completion_ids": [[1, 2]] * n, "reward": 0.0, "positive": True,
                             "logp": -1.0, "ref_logp": -1.0, "entropy": 1.0, "tokens": 2})  # fmt: skip

    one, two = real.replace("plot good", "qzx good", 1), real.replace("plot good", "qzx vvb", 1)  # 1 and 2 in 10
    base = metrics_from_samples(samples([one] * 100), vocabulary)
    heavy = metrics_from_samples(samples([real] * 83 + ["qzx vvb good film wpk zzt plot rrk"] * 17), vocabulary)
    even = metrics_from_samples(samples([real] * 50 + [two] * 50), vocabulary)
    assert base["fluency/garbled_rate"] == 0 and heavy["fluency/garbled_rate"] == pytest.approx(0.17)
    constraints = sweep_constraints(SweepConfig(), base)
    # both within the mean bound (base + 0.05): the mean cannot tell them apart
    assert even["fluency/nonword_rate"] == pytest.approx(base["fluency/nonword_rate"])
    assert heavy["fluency/nonword_rate"] < base["fluency/nonword_rate"]
    assert violations(heavy, constraints) == "fluency/garbled_rate 0.17 > 0.04"
    assert violations(even, constraints) is None


def test_infeasible_trials_stay_in_the_table_with_what_they_broke_and_leave_the_frontier():
    from alignray.sweep.frontier import feasibility, frontier

    config = SweepConfig()
    table = pd.DataFrame({
        "trial": ["degenerate", "fluent", "worse", "crashed"],
        "status": ["ok", "ok", "ok", "error"],
        "reward/mean": [0.52, 0.21, 0.10, np.nan],
        "diversity/word_entropy": [6.70, 6.58, 6.50, np.nan],
        "kl/ref": [32.3, 8.4, 3.0, np.nan],
        "fluency/nonword_rate": [0.168, 0.144, 0.12, np.nan],
    })  # fmt: skip
    table = feasibility(table, _constraints())
    assert table["feasible"].tolist() == [False, True, True, False]
    assert table.loc[0, "violations"] == "kl/ref 32.3 > 10; fluency/nonword_rate 0.168 > 0.16"
    assert table["violations"].iloc[1:].isna().all()
    assert table["constraint/kl/ref"].iloc[:3].tolist() == pytest.approx([22.3, -1.6, -7.0])
    assert table["constraint/fluency/nonword_rate"].iloc[:3].tolist() == pytest.approx([0.008, -0.016, -0.04])
    # the degenerate trial dominates every other: without the constraints it would be the whole frontier
    assert frontier(table, config).tolist() == [False, True, False, False]
    assert frontier(table.drop(columns="feasible"), config).tolist() == [True, False, False, False]


def test_optuna_is_told_each_constraint_as_the_metric_minus_its_bound(tmp_path):
    from alignray.sweep.driver import _searcher

    config = SweepConfig(output=str(tmp_path / "exp"), storage=f"sqlite:///{tmp_path / 'study.db'}")
    searcher = _searcher(config, "alignray-0123abcd", seeded=False, constraints=_constraints())
    searcher.suggest("degenerat")
    searcher.suggest("fluent01")
    high = {"reward/mean": 0.52, "diversity/word_entropy": 6.70, "kl/ref": 32.3, "fluency/nonword_rate": 0.168}
    searcher.on_trial_complete("degenerat", high)
    searcher.on_trial_complete("fluent01", {**high, "reward/mean": 0.21, "kl/ref": 8.4, "fluency/nonword_rate": 0.14})
    study = optuna.load_study(study_name="alignray-0123abcd", storage=config.storage)
    degenerate, fluent = study.trials
    assert degenerate.constraints == pytest.approx({"kl/ref": 22.3, "fluency/nonword_rate": 0.008})
    assert fluent.constraints == pytest.approx({"kl/ref": -1.6, "fluency/nonword_rate": -0.02})
    assert [t.number for t in study.best_trials] == [fluent.number]  # the degenerate trial dominates but is infeasible


def test_a_sweep_where_nothing_is_feasible_says_so_and_still_writes_everything(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from alignray.sweep import frontier as frontier_module
    from alignray.sweep.constraints import sweep_constraints
    from alignray.sweep.frontier import frontier_stage
    from alignray.sweep.plan import Plan

    config = SweepConfig(output=str(tmp_path))
    metrics = {"reward/mean": 0.5, "diversity/word_entropy": 6.7, "kl/ref": 30.0, "fluency/nonword_rate": 0.2}
    grid = [
        SimpleNamespace(config={"divergence": "reverse_kl", "beta": 0.1, "learning_rate": 1e-3}, error=None,
                        metrics={**metrics, "reward/mean": 0.5 + i}, checkpoint=None,
                        path=f"/x/run_trial_abcde{i}0_{i + 1}_beta=0.1")
        for i in range(2)
    ]  # fmt: skip
    monkeypatch.setattr(frontier_module, "study_numbers", lambda config, study: {})
    monkeypatch.setattr(frontier_module, "keep_models", lambda plan, grids, table: None)
    plan = Plan(config, tmp_path, "alignray-0123abcd", None, [], [], {}, {"cpu": 1.0, "gpu": 0.0}, 1, str(tmp_path))
    base = {"reward/mean": 0.0, "diversity/word_entropy": 6.6, "fluency/nonword_rate": 0.11,
            "fluency/garbled_rate": 0.0}  # fmt: skip
    table, summary = frontier_stage(plan, [grid], base, sweep_constraints(config, base))
    assert ("none of the 2 evaluated candidates met the constraints (kl/ref <= 10; fluency/nonword_rate <= 0.16; "
            "fluency/garbled_rate <= 0.04)") in capsys.readouterr().out  # fmt: skip
    assert summary["feasible"] == 0 and summary["frontier"] == [] and summary["hypervolume"] == 0.0
    assert summary["constraints"] == pytest.approx({"kl/ref": 10.0, "fluency/nonword_rate": 0.16,
                                                    "fluency/garbled_rate": 0.04})  # fmt: skip
    saved = pd.read_parquet(tmp_path / "results.parquet")
    assert len(saved) == 2 and not saved["feasible"].any() and saved["violations"].str.contains("kl/ref 30").all()
    assert pd.read_csv(tmp_path / "pareto.csv").empty


def test_the_hypervolume_reference_lets_a_diversity_gain_count():
    from alignray.sweep.frontier import hypervolume_reference

    base = {"reward/mean": 0.0, "diversity/word_entropy": 6.0}
    reference = hypervolume_reference(SweepConfig(), base)
    assert reference == pytest.approx((0.0, 5.7))
    assert hypervolume_reference(SweepConfig(hv_reward=-1.0, hv_diversity=3.0), base) == (-1.0, 3.0)
    front = np.array([[0.2, 5.90], [0.1, 5.95]])
    more_diverse = front + [0.0, 0.05]  # the same rewards, a twentieth of a nat more diverse
    gain = hypervolume(more_diverse, reference) / hypervolume(front, reference)
    assert gain > 1.15  # (0.2*0.25 + 0.1*0.05) / (0.2*0.2 + 0.1*0.05) = 1.22
    old = (0.0, 3.0)  # the old default, half the base's diversity: the same gain all but vanished
    assert hypervolume(more_diverse, old) / hypervolume(front, old) < 1.02


# --- configurable objectives: any two recorded metrics, each with a direction ---------------------------------------

REWARD_KL = ("reward/mean", "kl/ref:min")  # the DPO paper's reward–KL frontier


def test_a_minimised_kl_keeps_the_low_kl_trials_and_its_hypervolume_is_the_area_on_negated_kl(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from test_report import _dominated_area

    from alignray.sweep import driver
    from alignray.sweep import frontier as frontier_module
    from alignray.sweep.constraints import sweep_constraints
    from alignray.sweep.frontier import frontier_stage
    from alignray.sweep.plan import Plan

    config = SweepConfig(output=str(tmp_path), objectives=REWARD_KL, max_nonword_increase=None,  # max_kl 10
                         max_garbled_increase=None, derive_lambdas=(), soups=False)  # fmt: skip
    trials = {  # trial: (reward/mean, kl/ref)
        "aaaa1": (0.50, 8.0),  # the most reward within the KL budget
        "bbbb2": (0.30, 2.0),
        "cccc3": (0.20, 5.0),  # bbbb2 has more reward for less KL
        "dddd4": (0.50, 9.0),  # aaaa1 has the same reward for less KL
        "eeee5": (0.10, 1.0),  # the least KL
        "ffff6": (0.60, 12.0),  # beyond the KL budget: infeasible
    }
    grid = [
        SimpleNamespace(config={"divergence": "reverse_kl", "beta": 0.1, "learning_rate": 1e-3}, error=None,
                        metrics={"reward/mean": reward, "kl/ref": kl}, checkpoint=None,
                        path=f"/x/run_trial_{trial}_{i + 1}_beta=0.1")
        for i, (trial, (reward, kl)) in enumerate(trials.items())
    ]  # fmt: skip
    monkeypatch.setattr(frontier_module, "study_numbers", lambda config, study: {})
    monkeypatch.setattr(frontier_module, "keep_models", lambda plan, grids, table: None)
    plan = Plan(config, tmp_path, "alignray-0123abcd", None, [], [], {}, {"cpu": 1.0, "gpu": 0.0}, 1, str(tmp_path))
    base = {"reward/mean": 0.0, "kl/ref": 0.0}
    table, summary = frontier_stage(plan, [grid], base, sweep_constraints(config, base))
    assert summary["frontier"] == ["aaaa1", "bbbb2", "eeee5"]
    assert summary["reference_point"] == [0.0, 10.0]  # the base's reward, the KL budget
    assert "the KL budget, kl/ref 10 (max_kl" in summary["reference_rule"]
    # the area between the reference and the frontier, strip by strip of KL: 0.1 x (2 - 1) + 0.3 x (8 - 2) + 0.5 x 2
    assert summary["hypervolume"] == pytest.approx(2.9)
    feasible = table[table["feasible"]]
    negated = feasible[["reward/mean", "kl/ref"]].to_numpy() * [1, -1]
    assert summary["hypervolume"] == pytest.approx(_dominated_area(negated, (0.0, -10.0)))
    shown = driver._format_table(table, config, base).splitlines()  # kl/ref once, the most reward first
    assert shown[0].split().count("kl/ref") == 1 and [line.split()[0] for line in shown[2:]] == [
        "aaaa1", "bbbb2", "eeee5"]  # fmt: skip


def test_the_study_maximises_and_minimises_as_the_objectives_say(tmp_path):
    from alignray.sweep.driver import _searcher
    from alignray.sweep.objectives import Objective

    config = SweepConfig(output=str(tmp_path / "exp"), storage=f"sqlite:///{tmp_path / 'study.db'}",
                         objectives=REWARD_KL)  # fmt: skip
    assert config.objective_pair == (Objective("reward/mean", "max"), Objective("kl/ref", "min"))
    assert [o.better for o in config.objective_pair] == ["higher is better", "lower is better"]
    searcher = _searcher(config, "alignray-0123abcd", seeded=False)
    assert (searcher._metric, searcher._mode) == (["reward/mean", "kl/ref"], ["max", "min"])
    searcher.suggest("farkl001")
    searcher.suggest("nearkl02")
    searcher.on_trial_complete("farkl001", {"reward/mean": 0.5, "kl/ref": 8.0})
    searcher.on_trial_complete("nearkl02", {"reward/mean": 0.5, "kl/ref": 2.0})
    study = optuna.load_study(study_name="alignray-0123abcd", storage=config.storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert [t.user_attrs["tune_trial_id"] for t in study.best_trials] == ["nearkl02"]  # the same reward, less KL


def test_a_sweep_saved_with_one_study_for_all_divergences_is_refused_on_resume_and_left_as_it_was(tmp_path):
    """A sweep made before each divergence got its own share (and its own parameters in the study) cannot be
    extended without mixing two searches: --resume refuses it, naming the reason and the fix, before Ray starts, and
    changes nothing in it; its report can still be read."""
    import shutil

    from alignray.report import write_report
    from alignray.sweep.checks import load_resumed

    out = tmp_path / "old"
    shutil.copytree(ROOT / "tests" / "fixtures" / "experiment", out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="made before each divergence got its share of the search.*another --output"):
        load_resumed(SweepConfig(output=str(out), resume=True))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "sweep.py"), "--output", str(out), "--resume"],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert run.returncode == 2 and "made before each divergence got its share" in run.stderr
    assert "[alignray] started a local Ray" not in run.stdout + run.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (write_report(out)["report.md"]).is_file()  # still readable
