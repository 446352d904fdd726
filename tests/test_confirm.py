"""The confirmation stage's bookkeeping (``alignray.sweep.confirm``) without Ray: which models it evaluates, how the
seeds' figures become the confirmed columns and the confirmed frontier, and that a rerun evaluates nothing twice.
The stage itself runs end to end in the micro sweep of test_sweep.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from alignray.metrics import evaluation_prompts
from alignray.sweep.config import SweepConfig
from alignray.sweep.confirm import (
    CONFIRMED,
    NO_SEED,
    Candidate,
    Unit,
    confirmation_units,
    confirmed_columns,
    confirmed_view,
    run_units,
    split_prompts,
)
from alignray.sweep.constraints import Constraint
from alignray.sweep.frontier import divergence_best, to_confirm
from alignray.sweep.objectives import parse_objectives

OBJECTIVES = parse_objectives(("reward/mean", "diversity/word_entropy"))


def _search_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial": ["a", "b", "c", "d"],
            "status": ["ok", "ok", "ok", "error"],
            "divergence": ["reverse_kl", "forward_kl", "js_divergence", "reverse_kl"],
            "beta": [0.1, 0.5, 1.0, 0.2],
            "learning_rate": [5e-4, 3e-4, 2e-4, 1e-3],
            "alpha": [np.nan] * 4,
            "loss_type": ["sigmoid"] * 4,
            "reward/mean": [0.9, 0.5, 0.3, np.nan],
            "diversity/word_entropy": [5.0, 5.5, 5.9, np.nan],
            "kl/ref": [4.0, 3.0, 1.0, np.nan],
            "pareto": [True, True, True, False],
        }
    )


def _seed(trial: str, seed: int, reward: float, entropy: float, kl: float, fresh: bool = True) -> dict:
    return {"trial": trial, "seed": seed, "retrained": fresh, "status": "ok", "reward/mean": reward,
            "diversity/word_entropy": entropy, "kl/ref": kl}  # fmt: skip


def test_the_units_are_the_base_then_each_frontier_trial_at_its_search_run_and_new_seeds():
    config = SweepConfig(seed=7, replicates=2)
    table = _search_table().assign(kind="trial", tune_trial=lambda t: t["trial"])
    units = confirmation_units(config, table[table["pareto"]], table, {"a": "checkpoint-a"})
    assert [(u.names, u.seed, u.retrained, u.fresh) for u in units] == [
        (["base"], 7, False, False),
        (["a"], 7, False, False), (["a"], 8, True, True), (["a"], 9, True, True),
        # no checkpoint kept: its search run is retrained at the search's seed, and still not a fresh seed
        (["b"], 7, True, False), (["b"], 8, True, True), (["b"], 9, True, True),
        (["c"], 7, True, False), (["c"], 8, True, True), (["c"], 9, True, True),
    ]  # fmt: skip
    assert units[1].checkpoint == "checkpoint-a" and units[2].checkpoint is None
    assert units[1].params == {"divergence": "reverse_kl", "beta": 0.1, "learning_rate": 5e-4, "loss_type": "sigmoid"}
    assert all(not u.keeps for u in units)  # nothing is derived from them


def test_confirmed_columns_average_the_fresh_seeds_only_recheck_every_seed_and_make_the_frontier():
    seeds = pd.DataFrame(
        [
            _seed("base", 0, 0.0, 5.6, 0.0, fresh=False),
            # the search's own runs, the ones that won: distinct figures that must never enter a confirmed mean
            _seed("a", 0, 9.0, 9.0, 0.5, fresh=False), _seed("b", 0, 9.0, 9.0, 0.5, fresh=False),
            _seed("c", 0, 9.0, 9.0, 0.5, fresh=False),
            _seed("a", 1, 0.9, 5.0, 4.0), _seed("a", 2, 0.3, 5.2, 12.0),  # seed 2 breaks the budget
            _seed("b", 1, 0.5, 5.5, 3.0), _seed("b", 2, 0.7, 5.3, 3.0),  # 0.6, 5.4
            _seed("c", 1, 0.2, 5.9, 1.0), _seed("c", 2, 0.2, 5.7, 1.0),  # 0.2, 5.8
            {"trial": "c", "seed": 3, "retrained": True, "status": "error", "reason": "FloatingPointError: nan"},
        ]
    )  # fmt: skip
    table = confirmed_columns(_search_table(), seeds, [Constraint("kl/ref", 10.0)], OBJECTIVES)
    by = table.set_index("trial")
    fresh = seeds[seeds["retrained"] & (seeds["status"] == "ok")].groupby("trial")["reward/mean"].mean()
    for trial in ("a", "b", "c"):  # the mean of the fresh seeds alone
        assert by.loc[trial, CONFIRMED + "reward/mean"] == pytest.approx(fresh[trial])
        assert by.loc[trial, CONFIRMED + "search_run/reward/mean"] == 9.0  # shown beside, not averaged in
    assert by.loc["b", CONFIRMED + "diversity/word_entropy"] == pytest.approx(5.4)
    assert by[CONFIRMED + "seeds"].to_dict() == {"a": 2, "b": 2, "c": 2, "d": 0}  # the failed seed is not counted
    assert by[CONFIRMED + "failed_seeds"].to_dict() == {"a": 0, "b": 0, "c": 1, "d": 0}
    # a's mean KL, 8, meets the budget of 10, but its seed 2 broke it: not confirmed feasible
    assert by.loc["a", CONFIRMED + "kl/ref"] == pytest.approx(8.0)
    assert by[CONFIRMED + "feasible"].to_dict() == {"a": False, "b": True, "c": True, "d": False}
    assert by.loc["a", CONFIRMED + "violations"] == "seed 2: kl/ref 12 > 10"
    assert by[CONFIRMED + "pareto"].to_dict() == {"a": False, "b": True, "c": True, "d": False}
    assert np.isnan(by.loc["d", CONFIRMED + "reward/mean"])
    # the search's figures are kept as they were
    assert by.loc["a", "reward/mean"] == 0.9 and by.loc["a", "pareto"]

    # every fresh seed of a configuration failed: it stays a candidate, infeasible, named so
    error = {"trial": "c", "seed": 1, "retrained": True, "status": "error", "reason": "FloatingPointError: nan"}
    failed = pd.concat([seeds[seeds["trial"] != "c"], pd.DataFrame([error])], ignore_index=True)
    lost = confirmed_columns(_search_table(), failed, [Constraint("kl/ref", 10.0)], OBJECTIVES).set_index("trial")
    assert lost.loc["c", CONFIRMED + "seeds"] == 0 and not lost.loc["c", CONFIRMED + "feasible"]
    assert lost.loc["c", CONFIRMED + "violations"] == NO_SEED and pd.isna(lost.loc["d", CONFIRMED + "violations"])
    assert list(confirmed_view(lost.reset_index())["trial"]) == ["a", "b", "c"]

    view = confirmed_view(table).set_index("trial")
    assert list(view.index) == ["a", "b", "c"]
    assert view.loc["b", "reward/mean"] == pytest.approx(0.6) and view.loc["b", "search/reward/mean"] == 0.5
    assert view.loc["b", "search_run/reward/mean"] == 9.0
    assert view["pareto"].to_dict() == {"a": False, "b": True, "c": True}
    assert view.loc["a", "violations"] == "seed 2: kl/ref 12 > 10" and view.loc["c", "seeds"] == 2
    assert not any(c.startswith(CONFIRMED) for c in view.columns)


def test_each_divergences_best_is_confirmed_beside_the_frontier():
    table = _search_table().assign(kind="trial", feasible=[True, True, True, False])
    table = pd.concat([table, table.iloc[[0]].assign(trial="e", pareto=False, **{"reward/mean": 0.95})],
                      ignore_index=True)  # a reverse_kl candidate off the frontier, best in reward  # fmt: skip
    table.loc[1, "pareto"] = False  # forward_kl's only feasible candidate is off the frontier
    chosen = table.loc[to_confirm(table.assign(answer=divergence_best(table, OBJECTIVES[0]))), "trial"].tolist()
    assert chosen == ["a", "b", "c", "e"]  # the frontier (a, c) and each divergence's best (e, b, c)


def test_a_dominated_configuration_leaves_the_confirmed_frontier():
    seeds = pd.DataFrame([_seed("a", 1, 0.5, 5.0, 1.0), _seed("b", 1, 0.6, 5.5, 1.0), _seed("c", 1, 0.1, 5.9, 1.0)])
    table = confirmed_columns(_search_table(), seeds, [], OBJECTIVES)
    assert table.set_index("trial")[CONFIRMED + "pareto"].to_dict() == {"a": False, "b": True, "c": True, "d": False}
    # reward against KL, KL minimised: a (0.5, KL 1) is dominated by b (0.6, KL 1); c (0.1, KL 0.5) is not
    seeds.loc[2, "kl/ref"] = 0.5
    reward_kl = parse_objectives(("reward/mean", "kl/ref:min"))
    table = confirmed_columns(_search_table(), seeds, [], reward_kl)
    assert table.set_index("trial")[CONFIRMED + "pareto"].to_dict() == {"a": False, "b": True, "c": True, "d": False}
    seeds.loc[2, "kl/ref"] = 2.0  # now c is worse in both
    table = confirmed_columns(_search_table(), seeds, [], reward_kl)
    assert table.set_index("trial")[CONFIRMED + "pareto"].to_dict() == {"a": False, "b": True, "c": False, "d": False}


def test_the_confirmation_prompts_share_no_text_with_the_search_or_the_preference_data():
    from alignray.data.pipeline import load_prompts

    config = SweepConfig(eval_prompts=128, confirmation_prompts=128)
    drawn = evaluation_prompts(config.policy, 300, config.seed)
    preference = load_prompts(config.preference_config("-"))
    search, held_out, dropped = split_prompts(config, lambda n: drawn[:n], preference)
    assert search == evaluation_prompts(config.policy, 128, config.seed)  # what a sweep without confirmation uses
    assert len(held_out) == 128 == len(set(held_out))
    assert not set(held_out) & set(search) and not set(held_out) & set(preference)  # by text
    # openings of different reviews coincide ("I am", "This is"): skipped, counted, and the draw goes on
    assert dropped["search"] > 0 and dropped["preference"] > 0
    assert held_out == [p for p in dict.fromkeys(drawn[128:]) if p not in set(search) | set(preference)][:128]
    # without the preference prompts, some of them would have been confirmation prompts
    _, unaware, _ = split_prompts(config, lambda n: drawn[:n])
    assert set(unaware) & set(preference)


def test_the_confirmation_prompts_stop_where_the_pool_ends():
    config = SweepConfig(eval_prompts=4, confirmation_prompts=4)
    pool = ["a", "b", "c", "d", "a", "b", "f", "e"]  # the pool holds two prompts the search has not seen, one a
    search, held_out, dropped = split_prompts(config, lambda n: pool[:n], ["f"])  # preference prompt
    assert search == ["a", "b", "c", "d"] and held_out == ["e"]
    assert dropped == {"search": 2, "preference": 1, "repeated": 0}


def test_a_rerun_evaluates_no_unit_twice(tmp_path):
    """Units with a saved result (or a recorded failure) are read back: no Ray task starts (Ray is not even up)."""
    a = (Candidate("a", (("a", "model"),)),)
    fresh = Unit(1, a, "a", {"divergence": "reverse_kl"}, fresh=True)
    units = [Unit(0), Unit(0, a, "a", {}, "kept"), fresh]
    for unit, metrics in zip(units[:2], [{"reward/mean": 0.1}, {"reward/mean": 0.4}], strict=True):
        directory = unit.directory(tmp_path, unit.names[0])
        directory.mkdir(parents=True)
        (directory / "metrics.json").write_text(json.dumps({"metrics": metrics, "time/train_s": 0}))
    units[2].directory(tmp_path, "a").mkdir(parents=True)
    (units[2].directory(tmp_path, "a") / "failure.json").write_text(json.dumps({"reason": "ValueError: bad"}))
    said = []
    rows = run_units(units, SweepConfig(), pd.DataFrame(), [], tmp_path, {"cpu": 1, "gpu": 0}, 1, "-", said.append,
                     None)  # fmt: skip
    assert said == []
    assert rows[["trial", "seed", "status", "retrained"]].values.tolist() == [
        ["base", 0, "ok", False], ["a", 0, "ok", False], ["a", 1, "error", True]
    ]  # fmt: skip
    assert rows["reward/mean"].tolist()[:2] == [0.1, 0.4] and rows["reason"].iloc[2] == "ValueError: bad"


class _Ref:
    """An object reference of ``_InlineRay``: a task not run yet, then its outcome; hashable like Ray's."""

    def __init__(self, run):
        self.run, self.status, self.value = run, None, None

    def result(self, calls: list) -> _Ref:
        if self.status is None:
            calls.append(self.run.args[0])
            try:
                self.status, self.value = "ok", self.run()
            except Exception as err:  # noqa: BLE001 - handed back as ray.get raises it
                self.status, self.value = "error", err
        return self


class _InlineRay:
    """Ray's task API in this process, without a cluster: a task runs when waited for, the latest submitted first
    (Ray promises no order), and ``calls`` records the order tasks ran in."""

    def __init__(self):
        self.calls = []

    def remote(self, **resources):
        import functools

        def wrap(function):
            def submit(*args):
                run = functools.partial(function, *args)
                return _Ref(run)

            return SimpleNamespace(remote=submit)

        return wrap

    def wait(self, refs, num_returns):
        done = [ref.result(self.calls) for ref in refs[::-1][:num_returns]]
        return done, [ref for ref in refs if ref not in done]

    def get(self, ref):
        ref.result(self.calls)
        if ref.status == "error":
            raise ref.value
        return ref.value

    @staticmethod
    def put(value):
        return value


def test_a_failed_run_loses_only_its_own_candidates_and_those_made_from_it(tmp_path, monkeypatch):
    """One task per run and seed, one per derived model and seed: run b failing at seed 1 fails the soup c+b at
    seed 1 (with the reason), and nothing else; a derived model starts only after its parents' runs at its seed, and
    reads the search's checkpoint at the search's seed, the run's stored models at a fresh one."""
    import ray

    import alignray.sweep.confirm as confirm

    table = pd.DataFrame([
        {"trial": t, "kind": "trial", "tune_trial": t, "step": 9, "status": "ok", "pareto": t != "b",
         "divergence": "reverse_kl", "beta": 0.1, "learning_rate": 5e-4} for t in ("a", "b", "c")
    ] + [{"trial": "a~x1.5", "kind": "derived", "parents": ["a"], "weights": [1.5], "pareto": True},
         {"trial": "c+b", "kind": "derived", "parents": ["c", "b"], "weights": [0.5, 0.5],
          "pareto": True}])  # fmt: skip
    units = confirmation_units(SweepConfig(replicates=1), table[table["pareto"]], table,
                               {"a": "ckpt-a", "b": "ckpt-b", "c": "ckpt-c"})  # fmt: skip
    seen = {}

    failure = [ValueError("b's loss is NaN")]

    def evaluate(unit, config, pairs, prompts, train_storage, store, sources, fingerprint):
        seen[unit.names[0] if unit.names else unit.run, unit.seed] = sources
        if unit.run == "b" and unit.seed == 1:
            raise failure[0]
        metrics = {"reward/mean": 1.0, "diversity/word_entropy": 5.0, "kl/ref": 1.0}
        return [(name, metrics, pd.DataFrame()) for name in unit.names], 0.0

    fake = _InlineRay()
    for name in ("remote", "wait", "get", "put"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    monkeypatch.setattr(confirm, "_evaluate_unit", evaluate)
    store = str(tmp_path / "store")
    rows = run_units(units, SweepConfig(), pd.DataFrame(), [], tmp_path / "confirm", {"cpu": 1, "gpu": 0}, 8, "-",
                     lambda _: None, lambda path, write: write(path), store)  # fmt: skip
    status = {(r["trial"], r["seed"]): r["status"] for _, r in rows.iterrows()}
    assert status == {("base", 0): "ok", ("a", 0): "ok", ("a", 1): "ok", ("c", 0): "ok", ("c", 1): "ok",
                      ("a~x1.5", 0): "ok", ("a~x1.5", 1): "ok", ("c+b", 0): "ok", ("c+b", 1): "error"}  # fmt: skip
    reason = rows.set_index(["trial", "seed"]).loc[("c+b", 1), "reason"]
    assert reason == "its parent run failed at this seed: ValueError: b's loss is NaN"
    assert ("c+b", 1) not in seen  # never started
    order = [u.names[0] if u.derived else (u.run or "base", u.seed) for u in fake.calls]
    for derived, parents in (("a~x1.5", ["a"]), ("c+b", ["c", "b"])):
        for unit in [u for u in fake.calls if u.derived and u.names == [derived] and u.seed == 1]:
            # at the fresh seed its parents' runs are trained anew: it runs only after them (at the search's seed it
            # reads their checkpoints, and may run first: the tasks here run latest first)
            assert all(order.index((p, 1)) < fake.calls.index(unit) for p in parents if (p, 1) in order)
    assert ("b", 0) not in order and ("b", 1) in order  # b's search run: nothing to evaluate, its checkpoint serves
    assert seen["c+b", 0] == {"c": "ckpt-c", "b": "ckpt-b"}  # the search's own runs
    assert seen["a~x1.5", 1]["a"].path == f"{store}/a/seed-1"  # the fresh run's stored models
    # recorded: a rerun starts nothing (b's failure was deterministic, and so is the soup's)
    fake.calls.clear()
    again = run_units(units, SweepConfig(), pd.DataFrame(), [], tmp_path / "confirm", {"cpu": 1, "gpu": 0}, 2, "-",
                      lambda _: None, lambda path, write: write(path), store)  # fmt: skip
    assert fake.calls == [] and again["status"].tolist() == rows["status"].tolist()
    # a derived model still to do whose parent's run stored nothing (or not all it needs): the run is trained again
    # to store its models, evaluating none of its candidates twice; then the derived model
    (tmp_path / "confirm" / "a~x1.5" / "seed-1" / "metrics.json").unlink()
    recorded = (tmp_path / "confirm" / "a" / "seed-1" / "metrics.json").read_text()
    run_units(units, SweepConfig(), pd.DataFrame(), [], tmp_path / "confirm", {"cpu": 1, "gpu": 0}, 2, "-",
              lambda _: None, lambda path, write: write(path), store)  # fmt: skip
    assert [(u.run, u.names, u.seed) for u in fake.calls] == [("a", [], 1), (None, ["a~x1.5"], 1)]
    assert fake.calls[0].keeps == ("model",)
    assert (tmp_path / "confirm" / "a" / "seed-1" / "metrics.json").read_text() == recorded
    # b's run failing for a reason that may pass (a lost node): the soup fails with it but records nothing, so a
    # resume runs both again; the stored models stay for it
    (tmp_path / "confirm" / "c+b" / "seed-1" / "failure.json").unlink()
    (tmp_path / "store" / "c" / "seed-1").mkdir(parents=True)
    failure[0] = ConnectionError("the node died")
    fake.calls.clear()
    rows = run_units(units, SweepConfig(), pd.DataFrame(), [], tmp_path / "confirm", {"cpu": 1, "gpu": 0}, 8, "-",
                     lambda _: None, lambda path, write: write(path), store)  # fmt: skip
    soup = rows.set_index(["trial", "seed"]).loc[("c+b", 1)]
    assert soup["status"] == "error" and soup["reason"].endswith("ConnectionError: the node died; --resume")
    assert not list((tmp_path / "confirm" / "c+b" / "seed-1").iterdir()) and (tmp_path / "store" / "c").is_dir()
    assert sorted((u.run, u.seed) for u in fake.calls) == [("b", 1), ("c", 1)]  # c to store its model again


def test_stored_models_count_only_when_every_one_needed_is_listed(tmp_path):
    """A resumed sweep whose frontier moved may need another model of a run that stored some: the run's marker
    lists what it stored, and a model missing from it sends the run back to train and store again."""
    from alignray.sweep.confirm import STORED, _is_stored

    store = str(tmp_path / "store")
    assert not _is_stored(store, "a", 1, ("model",))  # nothing stored
    (tmp_path / "store" / "a" / "seed-1").mkdir(parents=True)
    (tmp_path / "store" / "a" / "seed-1" / STORED).write_text(json.dumps(["model"]))
    assert _is_stored(store, "a", 1, ("model",))
    assert not _is_stored(store, "a", 1, ("model", "points/step-3/model"))
    assert not _is_stored(store, "a", 2, ("model",))  # another seed's


def test_a_derived_model_at_a_seed_is_combine_of_its_parents_run_trained_at_that_seed(tmp_path, micro_world):
    """Seed s's derived model, built from the run unit's stored models, is ``combine`` of that run trained anew at
    seed s: the run unit stores what it trained, and the derived unit builds and evaluates exactly that model."""
    import dataclasses

    from safetensors.torch import load_file

    from alignray.sweep.confirm import _evaluate_unit, _stored_checkpoint
    from alignray.sweep.derive import combine
    from alignray.sweep.trial import evaluate_model, train_config
    from alignray.train import train

    world, _ = micro_world
    config = SweepConfig(policy=str(world / "policy"), reward=str(world / "reward"), judge="none", batch_size=4,
                         max_length=48, max_new_tokens=8, eval_samples_per_prompt=1, eval_points=1)  # fmt: skip
    pairs = pd.DataFrame([(f"the film {i}", " was great fun", " was dull") for i in range(8)],
                         columns=["prompt", "chosen", "rejected"])  # fmt: skip
    prompts, store = ["I think", "This movie", "The actors"], str(tmp_path / "store")
    params = {"divergence": "reverse_kl", "beta": 0.5, "learning_rate": 1e-3}
    threads = torch.get_num_threads()  # a unit sets its task's threads; this process runs other tests after
    run = Unit(3, (Candidate("a", (("a", "model"),)),), "a", params, fresh=True, keeps=("model",))
    derived = Unit(3, (Candidate("a~x1.5", (("a", "model"),), (1.5,)),), fresh=True)
    try:
        [(name, trained_metrics, _)], seconds = _evaluate_unit(run, config, pairs, prompts, "-", store, {}, None)
        assert name == "a" and seconds > 0
        [(name, metrics, _)], _ = _evaluate_unit(derived, config, pairs, prompts, "-", store,
                                                 {"a": _stored_checkpoint(store, "a", 3)}, None)  # fmt: skip
        # the same run trained here at seed 3 (with the unit's threads), and its ExPO by hand
        data = tmp_path / "pairs.parquet"
        pairs.to_parquet(data, index=False)
        again = dataclasses.replace(train_config(params, config, str(data), str(tmp_path / "again")), seed=3)
        train(again, quiet=True)
    finally:
        torch.set_num_threads(threads)
    stored = load_file(tmp_path / "store" / "a" / "seed-3" / "model" / "model.safetensors")
    mine = load_file(tmp_path / "again" / "model" / "model.safetensors")
    assert all(torch.equal(stored[k], mine[k]) for k in mine)  # the run unit stored the seed's training
    by_hand = combine(config.policy, [(tmp_path / "again" / "model", 1.5)], tmp_path / "expo")
    expected, _ = evaluate_model(str(by_hand), config, prompts, 3)
    assert name == "a~x1.5" and metrics == expected
    assert metrics["kl/ref"] != trained_metrics["kl/ref"]  # another model than its parent
