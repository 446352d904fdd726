"""Derived candidates (``alignray.sweep.derive``): weight arithmetic on the micro world's policy, the recipes a
frontier gets, which models the frontier keeps, and how confirmation groups candidates that share trials' runs."""

from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from alignray.sweep.config import SweepConfig
from alignray.sweep.confirm import Candidate, confirmation_units
from alignray.sweep.derive import Recipe, combine, derive_recipes

TEXT = "This movie was a wonderful surprise, and the cast"


def _log_probs(model_dir: Path) -> torch.Tensor:
    """The per-token log-probs of ``TEXT`` under the model in ``model_dir``."""
    from alignray.world import load_policy

    model, tokenizer = load_policy(str(model_dir), device="cpu")
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, :-1]
    return torch.log_softmax(logits.float(), -1).gather(1, ids[0, 1:, None])[:, 0]


def _fine_tuned(base: Path, out: Path, seed: int) -> Path:
    """A stand-in for a trial's model: the base policy with every parameter moved by seeded noise."""
    from alignray.world import load_policy

    model, tokenizer = load_policy(str(base), device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(micro_world, tmp_path_factory):
    world, _ = micro_world
    root = tmp_path_factory.mktemp("derive")
    return world / "policy", _fine_tuned(world / "policy", root / "a", 1), _fine_tuned(world / "policy", root / "b", 2)


def test_interpolation_at_zero_is_the_base_and_at_one_the_trial(models, tmp_path):
    base, trial, _ = models
    at_zero = combine(str(base), [(trial, 0.0)], tmp_path / "zero")
    at_one = combine(str(base), [(trial, 1.0)], tmp_path / "one")
    torch.testing.assert_close(_log_probs(at_zero), _log_probs(base), rtol=0, atol=1e-5)
    torch.testing.assert_close(_log_probs(at_one), _log_probs(trial), rtol=0, atol=1e-5)
    assert not torch.allclose(_log_probs(base), _log_probs(trial), atol=1e-3)  # the two really differ
    assert (tmp_path / "one" / "model.safetensors").is_file() and not list((tmp_path / "one").glob("*.bin"))


def test_extrapolation_and_soups_are_the_task_vectors_arithmetic(models, tmp_path):
    base, a, b = models
    weights = {name: load_file(path / "model.safetensors") for name, path in (("base", base), ("a", a), ("b", b))}
    expo = load_file(combine(str(base), [(a, 1.5)], tmp_path / "expo") / "model.safetensors")
    soup = load_file(combine(str(base), [(a, 0.5), (b, 0.5)], tmp_path / "soup") / "model.safetensors")
    for name, start in weights["base"].items():
        if not start.is_floating_point():
            continue
        torch.testing.assert_close(expo[name], start + 1.5 * (weights["a"][name] - start), rtol=0, atol=1e-5)
        torch.testing.assert_close(soup[name], (weights["a"][name] + weights["b"][name]) / 2, rtol=0, atol=1e-5)


def test_a_model_not_fine_tuned_from_the_base_is_refused(models, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    base, _, _ = models
    config = AutoConfig.from_pretrained(base)
    config.n_layer += 1  # another architecture: one more block
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "other")
    shutil.copy(base / "tokenizer.json", tmp_path / "other")
    with pytest.raises(ValueError, match="has other parameters than the base policy .*not fine-tuned from it"):
        combine(str(base), [(tmp_path / "other", 1.5)], tmp_path / "bad")


def test_a_model_of_other_shapes_under_the_same_names_is_refused(models, tmp_path):
    """The parameters' names match (same depth) but not their shapes (another width): not fine-tuned from it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    base, _, _ = models
    config = AutoConfig.from_pretrained(base)
    config.n_embd *= 2
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "wider")
    shutil.copy(base / "tokenizer.json", tmp_path / "wider")
    with pytest.raises(ValueError, match="has other parameters than the base policy .*not fine-tuned from it"):
        combine(str(base), [(tmp_path / "wider", 1.5)], tmp_path / "bad")


def test_half_precision_models_are_combined_in_float32_and_saved_in_their_own_dtype(models, tmp_path):
    """bf16 weights: the task vectors are taken in float32 (bf16 arithmetic would round each difference) and the
    result is cast back, so a derived model has its parents' dtype and size."""
    from alignray.world import load_policy

    base, a, _ = models
    for name, source in (("base16", base), ("a16", a)):
        model, tokenizer = load_policy(str(source), device="cpu")
        model.to(torch.bfloat16).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    out = combine(str(tmp_path / "base16"), [(tmp_path / "a16", 1.5)], tmp_path / "expo")
    start, parent = (load_file(tmp_path / n / "model.safetensors") for n in ("base16", "a16"))
    built = load_file(out / "model.safetensors")
    for name, value in built.items():
        assert value.dtype == torch.bfloat16 == start[name].dtype, name
        expected = (start[name].float() + 1.5 * (parent[name].float() - start[name].float())).to(torch.bfloat16)
        assert torch.equal(value, expected), name
    naive = start["transformer.h.0.mlp.c_fc.weight"] + 1.5 * (parent["transformer.h.0.mlp.c_fc.weight"] -
                                                               start["transformer.h.0.mlp.c_fc.weight"])  # fmt: skip
    assert not torch.equal(naive, built["transformer.h.0.mlp.c_fc.weight"])  # bf16 arithmetic would differ


def test_the_recipes_are_each_lambda_and_soups_of_neighbours_from_different_trials():
    front = pd.DataFrame({"trial": ["a@3", "a", "b", "c@2"], "tune_trial": ["a", "a", "b", "c"]})
    recipes = derive_recipes(front, (0.5, 1.5), soups=True)
    assert [r.id for r in recipes] == ["a@3~x0.5", "a@3~x1.5", "a~x0.5", "a~x1.5", "b~x0.5", "b~x1.5", "c@2~x0.5",
                                       "c@2~x1.5", "a+b", "b+c@2"]  # fmt: skip
    assert recipes[-1] == Recipe(("b", "c@2"), (0.5, 0.5)) and "soup" in recipes[-1].text
    assert "ExPO" in recipes[1].text and "towards the base" in recipes[0].text
    assert derive_recipes(front, (), soups=False) == []


def _results(trials: dict[str, tuple], derived: list[dict] = ()) -> pd.DataFrame:
    """A results table: id -> (kind, tune trial, step, on the frontier[, on the trained candidates' frontier]), then
    derived rows."""
    rows = [{"trial": t, "kind": kind, "tune_trial": tune, "step": step, "status": "ok", "pareto": front,
             "trained_pareto": trained[0] if trained else front, "divergence": "reverse_kl", "beta": 0.1,
             "learning_rate": 5e-4, "alpha": np.nan, "loss_type": "sigmoid"}
            for t, (kind, tune, step, front, *trained) in trials.items()]  # fmt: skip
    derived = [{"kind": "derived", "status": "ok", "trained_pareto": False, **d} for d in derived]
    return pd.DataFrame([*rows, *derived])


def test_confirmation_trains_each_run_once_per_seed_and_builds_derived_models_in_tasks_of_their_own():
    """A point and the final model of one trial share its run's unit; each run has a unit at the search's seed (from
    its checkpoint) and at each new seed, keeping the models derived candidates are made from; each derived candidate
    is a unit of its own per seed, so a soup chains no runs together."""
    table = _results(
        {"a@3": ("point", "a", 3, True), "a": ("trial", "a", 9, True), "b": ("trial", "b", 9, False),
         "c": ("trial", "c", 9, True), "d": ("trial", "d", 9, False)},
        [{"trial": "a~x1.5", "parents": ["a"], "weights": [1.5], "pareto": True},
         {"trial": "c+b", "parents": ["c", "b"], "weights": [0.5, 0.5], "pareto": True}],
    )  # fmt: skip
    units = confirmation_units(SweepConfig(replicates=1), table[table["pareto"]], table,
                               {"a": "ckpt-a", "b": "ckpt-b", "c": None})  # fmt: skip
    assert [(u.run, u.names, u.seed, u.retrained, u.keeps) for u in units] == [
        (None, ["base"], 0, False, ()),
        ("a", ["a@3", "a"], 0, False, ("model",)), ("a", ["a@3", "a"], 1, True, ("model",)),
        # c kept no checkpoint: its search run is retrained
        ("c", ["c"], 0, True, ("model",)), ("c", ["c"], 1, True, ("model",)),
        ("b", [], 0, False, ("model",)), ("b", [], 1, True, ("model",)),  # only a parent of c+b: nothing to evaluate
        (None, ["a~x1.5"], 0, False, ()), (None, ["a~x1.5"], 1, False, ()),
        (None, ["c+b"], 0, False, ()), (None, ["c+b"], 1, False, ()),
    ]  # fmt: skip
    assert units[1].checkpoint == "ckpt-a" and units[5].checkpoint == "ckpt-b" and units[6].checkpoint is None
    assert units[1].params["divergence"] == "reverse_kl"
    assert units[1].candidates[0] == Candidate("a@3", (("a", "points/step-3/model"),))
    assert units[9].candidates == (Candidate("c+b", (("c", "model"), ("b", "model")), (0.5, 0.5)),)
    assert units[9].parents == ["c", "b"] and units[9].derived and [u.fresh for u in units[9:]] == [False, True]


def test_the_frontier_keeps_its_models_and_the_parents_of_its_derived_ones_only(models, tmp_path, monkeypatch):
    """Weights are kept for the frontier's candidates (copied to frontier/<id>/model; a derived one: the model its
    derive task built, or rebuilt in a task when that is gone), for the parents of its derived ones, which
    confirmation rebuilds them from, and for the trained candidates' own frontier, which a resumed sweep derives from
    again; every other model is deleted, an errored point's and the derive tasks' own too."""
    import ray
    from ray.tune import Checkpoint
    from test_confirm import _InlineRay, _Ref

    from alignray.sweep import frontier, plan
    from alignray.sweep.derive import combine

    base, a, b = models
    grids, root = [[]], tmp_path / "tune"
    for index, (trial, model) in enumerate((("aaaaa1", a), ("bbbbb2", b)), start=1):
        checkpoint = root / f"run_trial_{trial}_{index}_beta=0.1" / "checkpoint_000000"
        for where in (checkpoint, checkpoint / "points" / "step-3"):
            shutil.copytree(model, where / "model")
            pd.DataFrame({"prompt": [str(where)]}).to_parquet(where / "samples.parquet")
        grids[0].append(SimpleNamespace(path=str(checkpoint.parent), checkpoint=Checkpoint.from_directory(checkpoint)))
    out = tmp_path / "exp"
    (out / "derived" / "bbbbb2~x1.5").mkdir(parents=True)
    pd.DataFrame({"prompt": ["derived"]}).to_parquet(out / "derived" / "bbbbb2~x1.5" / "samples.parquet")
    table = _results(
        {"aaaaa1@3": ("point", "aaaaa1", 3, True), "aaaaa1": ("trial", "aaaaa1", 9, False, True),
         "bbbbb2@3": ("point", "bbbbb2", 3, False), "bbbbb2": ("trial", "bbbbb2", 9, False, False)},
        [{"trial": "bbbbb2~x1.5", "parents": ["bbbbb2"], "weights": [1.5], "pareto": True}],
    )  # fmt: skip
    table.loc[table["trial"] == "bbbbb2@3", "status"] = "error"  # a point whose objectives were NaN
    config = SweepConfig(output=str(out), policy=str(base))
    planned = plan.Plan(config, out, "alignray-0123abcd", None, [], [], {}, {"cpu": 1.0, "gpu": 0.0}, 1, str(root))
    built_by_task = combine(str(base), [(b, 1.5)], out / "derived" / "bbbbb2~x1.5" / "model")
    fake = _InlineRay()
    for name in ("remote", "get"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    frontier.keep_models(planned, grids, table)
    assert fake.calls == [] and not built_by_task.exists()  # the task's model was taken, not rebuilt

    kept = sorted(str(p.parent.relative_to(root)) for p in root.rglob("model.safetensors"))
    assert kept == [
        "run_trial_aaaaa1_1_beta=0.1/checkpoint_000000/model",  # on the trained candidates' own frontier only
        "run_trial_aaaaa1_1_beta=0.1/checkpoint_000000/points/step-3/model",  # on the frontier
        "run_trial_bbbbb2_2_beta=0.1/checkpoint_000000/model",  # the parent of a derived frontier model only
    ]
    assert sorted(p.name for p in (out / "frontier").iterdir()) == ["aaaaa1@3", "bbbbb2~x1.5"]
    built = load_file(out / "frontier" / "bbbbb2~x1.5" / "model" / "model.safetensors")
    start, parent = load_file(base / "model.safetensors"), load_file(b / "model.safetensors")
    for name, value in built.items():
        torch.testing.assert_close(value, start[name] + 1.5 * (parent[name] - start[name]), rtol=0, atol=1e-5)
    assert sorted(p.stem for p in (out / "samples").glob("*.parquet")) == sorted(
        table.loc[table["status"] == "ok", "trial"])  # fmt: skip
    point = pd.read_parquet(out / "samples" / "aaaaa1@3.parquet")["prompt"].item()
    assert point.endswith("points/step-3")  # each candidate's own samples
    # again (a resume): the frontier's derived model is kept as it is, nothing is rebuilt
    frontier.keep_models(planned, grids, table)
    assert fake.calls == [] and sorted(p.name for p in (out / "frontier").iterdir()) == ["aaaaa1@3", "bbbbb2~x1.5"]
    # a derived model an earlier frontier lacked (it joined on a resume), its derive task's long deleted: rebuilt
    # from its parent, in a task; a derived model off the frontier, an errored one too, is deleted
    shutil.rmtree(out / "frontier" / "bbbbb2~x1.5")
    combine(str(base), [(b, 0.5)], out / "derived" / "bbbbb2~x0.5" / "model")
    frontier.keep_models(planned, grids, table)
    assert [recipe.id for recipe in fake.calls] == ["bbbbb2~x1.5"]
    again = load_file(out / "frontier" / "bbbbb2~x1.5" / "model" / "model.safetensors")
    assert all(torch.equal(again[name], built[name]) for name in built)
    assert not list((out / "derived").glob("*/model"))
    # keep_all_models: a derived model that leaves the frontier goes back beside its samples, not away
    kept_all = plan.Plan(dataclasses.replace(config, keep_all_models=True), out, "alignray-0123abcd", None, [], [],
                         {}, {"cpu": 1.0, "gpu": 0.0}, 1, str(root))  # fmt: skip
    off = table.assign(pareto=table["trial"] == "aaaaa1@3")
    frontier.keep_models(kept_all, grids, off)
    assert not (out / "frontier" / "bbbbb2~x1.5").exists()
    moved = load_file(out / "derived" / "bbbbb2~x1.5" / "model" / "model.safetensors")
    assert all(torch.equal(moved[name], built[name]) for name in built)
    # a rebuild that fails leaves the candidate's samples on the frontier, and the sweep going
    shutil.rmtree(out / "derived" / "bbbbb2~x1.5" / "model")

    def unreadable(*args):
        raise OSError("parent checkpoint unreadable")

    def failing(**resources):
        return lambda function: SimpleNamespace(remote=lambda *args: _Ref(functools.partial(unreadable, *args)))

    monkeypatch.setattr(ray, "remote", failing)
    fake.calls.clear()
    frontier.keep_models(planned, grids, table)
    assert len(fake.calls) == 1  # the rebuild was tried, and failed
    assert sorted(p.name for p in (out / "frontier" / "bbbbb2~x1.5").iterdir()) == ["samples.parquet"]


def test_a_derived_model_is_refused_when_the_base_weights_changed(models, tmp_path):
    """The sweep records its base policy's weights fingerprint; combining against a base with other weights (a
    rebuilt world, a moved hub revision) is refused, since the trials' task vectors were taken from the old one."""
    from alignray.world import load_policy, weights_fingerprint

    base, a, _ = models
    recorded = weights_fingerprint(load_policy(str(base), device="cpu")[0])
    assert recorded == weights_fingerprint(load_policy(str(base), device="cpu")[0])  # stable across loads
    combine(str(base), [(a, 1.5)], tmp_path / "same", recorded)
    with pytest.raises(ValueError, match="not the .* the sweep recorded"):
        combine(str(a), [(a, 1.5)], tmp_path / "moved", recorded)  # "a" stands for a base whose weights moved
    assert not (tmp_path / "moved").exists()


def test_derived_candidates_are_read_back_and_an_earlier_frontiers_stay(tmp_path):
    """Evaluated derived candidates are read back without Ray (a rerun evaluates nothing twice), and one that an
    earlier run derived from a model no longer on the frontier (a resumed sweep with more trials) stays a row. A NaN
    objective makes a derived candidate an error, as it does a trial."""
    import json

    from alignray.sweep.derive import derive

    def done(recipe: Recipe, reward: float) -> None:
        (tmp_path / recipe.id).mkdir()
        record = {"recipe": {"parents": list(recipe.parents), "weights": list(recipe.weights)},
                  "metrics": {"reward/mean": reward, "diversity/word_entropy": 5.0}}  # fmt: skip
        (tmp_path / recipe.id / "metrics.json").write_text(json.dumps(record))

    table = _results({"a": ("trial", "a", 9, True), "b": ("trial", "b", 9, False)})
    table = table.assign(**{"reward/mean": [0.2, 0.1], "diversity/word_entropy": [5.0, 4.9]})
    done(Recipe(("a",), (0.5,)), 0.1)
    done(Recipe(("a",), (1.5,)), float("nan"))
    done(Recipe(("b",), (1.5,)), 0.3)  # b was on the frontier of an earlier run
    said = []
    config = SweepConfig(soups=False)
    rows = derive(table, config, [], tmp_path, {"cpu": 1, "gpu": 0}, {}, said.append, None).set_index("trial")
    assert said == [] and list(rows.index) == ["a~x0.5", "a~x1.5", "b~x1.5"]
    assert rows["status"].tolist() == ["ok", "error", "ok"] and "non-finite" in rows.loc["a~x1.5", "reason"]
    assert rows.loc["b~x1.5", "parents"] == ["b"] and rows.loc["b~x1.5", "reward/mean"] == 0.3
    assert rows.loc["a~x0.5", "divergence"] == "reverse_kl" and rows.loc["a~x0.5", "lambda"] == 0.5


def test_an_earlier_derived_candidate_without_its_parents_or_recipe_is_left_out(tmp_path):
    """A derived candidate on disk whose parents are no trials of this table (a Tune experiment that could not be
    restored) cannot be confirmed: it is left out, said so; a record without its recipe is not read as one."""
    import json

    from alignray.sweep.derive import derive

    table = _results({"a": ("trial", "a", 9, False)}).assign(**{"reward/mean": [0.2], "diversity/word_entropy": [5.0]})
    for name, record in (("zz~x1.5", {"recipe": {"parents": ["zz"], "weights": [1.5]}}), ("a~x2", {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({**record, "metrics": {"reward/mean": 0.1}}))
    said = []
    rows = derive(table, SweepConfig(), [], tmp_path, {"cpu": 1, "gpu": 0}, {}, said.append, None)
    assert rows.empty and len(said) == 1 and "zz~x1.5 left out" in said[0]
