"""Derived candidates: new models made from the search frontier's weights, for the price of one evaluation each.

Every trial starts from the same base policy, so its weights are the base's plus a task vector, and weight
arithmetic on those vectors gives models that no trial trained (``Recipe``: θ = θ_base + Σ w_i (θ_i − θ_base)):

- **interpolation and extrapolation** of one model (one parent, weight λ): λ < 1 moves it back towards the base
  (less reward, the base's diversity), λ > 1 further away from it (ExPO, Zheng et al. 2024: more reward, as if
  trained longer);
- **soups** of two models (two parents, weight ½ each; rewarded soups, Ramé et al. 2023): a mix between two frontier
  points.

After the search (``derive``: between the frontier and the confirmation), each model on the feasible search frontier
gets one recipe per ``derive_lambdas`` and, with ``soups``, each two neighbours along it from different trials a
soup. Each derived model is built and
evaluated once on the search's prompts in a Ray task (trial resources), and becomes a row of ``results.parquet``
(``kind`` "derived", its ``parents``, ``weights`` and ``recipe``), subject to the same constraints as the trials.
Optuna never sees one: a derived model is no point of the study's space. One that reaches the frontier is confirmed
like a trained one (rebuilt from each seed's parents) and saved with ``save_pretrained`` under ``frontier/<id>/``.

Directory: ``derived/<id>/`` with ``metrics.json``, ``samples.parquet`` and the ``model/`` its task built (or
``failure.json``); a candidate already evaluated is reused, so a rerun or ``--resume`` evaluates nothing twice. The
frontier moves the model of each derived frontier member to ``frontier/<id>/`` and deletes the others (unless
``keep_all_models``); one whose model is gone (it joined the frontier on a resume) is rebuilt in a Ray task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alignray.sweep.config import PARAMETERS, SweepConfig

__all__ = ["DERIVED", "MODEL", "Recipe", "build", "build_and_evaluate", "combine", "derive", "derive_recipes",
           "fetch_model", "is_done", "model_files", "model_path", "read_model", "recipe_of",
           "write_model"]  # fmt: skip

DERIVED = "derived"
"""The ``kind`` of a derived candidate in ``results.parquet`` (trained ones: "trial", the final model, and "point",
a model along its training)."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """θ_base + Σ w_i (θ_i − θ_base) over the trained candidates ``parents`` with ``weights``."""

    parents: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def id(self) -> str:
        """The candidate's id: ``<parent>~x<λ>`` (one parent), ``<a>+<b>`` (a soup)."""
        if len(self.parents) == 1:
            return f"{self.parents[0]}~x{self.weights[0]:g}"
        return "+".join(self.parents)

    @property
    def text(self) -> str:
        """The recipe in words, for the report."""
        if len(self.parents) == 1:
            how = "interpolated towards the base" if self.weights[0] < 1 else "extrapolated from the base (ExPO)"
            return f"base + {self.weights[0]:g}·({self.parents[0]} − base): {how}"
        return "soup: " + " + ".join(f"{w:g}·{p}" for p, w in zip(self.parents, self.weights, strict=True))


def derive_recipes(front: pd.DataFrame, lambdas: Sequence[float], soups: bool) -> list[Recipe]:
    """The recipes for the trained frontier candidates ``front`` (rows with ``trial`` and ``tune_trial``, in their
    order along the frontier): one per λ of each, and with ``soups`` the even mix of each two neighbours along the
    frontier that come from different trials (a soup fills the gap between them; two points of one run would only
    retrace its trajectory, and all pairs would grow as the square of the frontier)."""
    ids, runs = front["trial"].tolist(), front["tune_trial"].tolist()
    recipes = [Recipe((parent,), (float(lam),)) for parent in ids for lam in lambdas]
    if soups:
        recipes += [Recipe((ids[i], ids[i + 1]), (0.5, 0.5)) for i in range(len(ids) - 1) if runs[i] != runs[i + 1]]
    return recipes


def recipe_of(row: dict[str, Any]) -> Recipe:
    """The recipe of a derived row of ``results.parquet``."""
    return Recipe(tuple(row["parents"]), tuple(float(w) for w in row["weights"]))


def model_path(row: dict[str, Any]) -> str:
    """Where a trained candidate's model lies in its trial's checkpoint: ``model`` (the final one) or
    ``points/step-<n>/model``."""
    from alignray.train_config import POINTS

    return "model" if row["kind"] == "trial" else f"{POINTS}/step-{int(row['step'])}/model"


def fetch_model(checkpoint: Any, path: str, target: Path) -> Path:
    """Copy ``path`` from a Tune checkpoint (local or in cloud storage) to ``target``."""
    from pyarrow import fs

    target.mkdir(parents=True, exist_ok=True)
    fs.copy_files(f"{checkpoint.path}/{path}", str(target), source_filesystem=checkpoint.filesystem,
                  destination_filesystem=fs.LocalFileSystem())  # fmt: skip
    return target


def combine(
    base: str, parents: Sequence[tuple[str | Path, float]], out: Path, fingerprint: str | None = None
) -> Path:
    """Save θ_base + Σ w (θ_parent − θ_base) to ``out`` (``save_pretrained``: safetensors, with the base's tokenizer).

    Parameters are combined by name over ``named_parameters`` (tied weights once), in float32 whatever the models'
    dtype, then cast back; buffers stay the base's. ``parents`` are model directories fine-tuned from ``base``.
    ``fingerprint``: the ``weights_fingerprint`` the sweep recorded of its base policy; a base that loads with another
    one (a rebuilt world, a moved hub revision) is refused, since the parents' task vectors were not taken from it."""
    import torch

    from alignray.world import load_policy, weights_fingerprint

    model, tokenizer = load_policy(base, device="cpu")
    found = weights_fingerprint(model) if fingerprint is not None else None
    if found != fingerprint:
        raise ValueError(f"the base policy {base} now has weights fingerprint {found}, not the {fingerprint} the "
                         "sweep recorded in sweep.json: its trials were fine-tuned from other weights, so no model "
                         "can be derived from them")  # fmt: skip
    with torch.no_grad():
        start = {name: p.detach().float().clone() for name, p in model.named_parameters()}
        moved = {name: torch.zeros_like(p) for name, p in start.items()}
        for path, weight in parents:
            parent, _ = load_policy(str(path), device="cpu")
            theirs = dict(parent.named_parameters())
            differ = sorted(set(start) ^ set(theirs)) or [n for n in start if theirs[n].shape != start[n].shape]
            if differ:
                raise ValueError(f"{path} has other parameters than the base policy {base} ({', '.join(differ[:3])}): "
                                 "it was not fine-tuned from it")  # fmt: skip
            for name in start:
                moved[name] += weight * (theirs[name].float() - start[name])
            del parent, theirs
        for name, p in model.named_parameters():
            p.copy_((start[name] + moved[name]).to(p.dtype))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_and_evaluate(
    recipe: Recipe, sources: dict[str, tuple[Any, str]], config: SweepConfig, prompts: list[str], seed: int,
    fingerprint: str | None = None,
) -> tuple[dict[str, float], pd.DataFrame, dict[str, bytes]]:  # fmt: skip
    """Runs as a Ray task: the recipe's model from its parents (``sources``: parent id to its Tune checkpoint and the
    model's path in it, ``fingerprint``: the base's, ``combine``), evaluated as every policy of the sweep is;
    (metrics, samples, the model's files by name), the files for the driver to keep should it join the frontier."""
    import torch

    from alignray.sweep.trial import evaluate_model
    from alignray.world import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(max(1, int(config.cpus_per_trial)))
    with tempfile.TemporaryDirectory(prefix="alignray-derive-") as scratch:
        model = build(recipe, sources, config.policy, Path(scratch) / "model", fingerprint)
        metrics, samples = evaluate_model(str(model), config, prompts, seed)
        return metrics, samples, read_model(model)


def build(
    recipe: Recipe, sources: dict[str, tuple[Any, str]], base: str, out: Path, fingerprint: str | None = None
) -> Path:
    """Save the recipe's model to ``out``, from its parents' models (``sources``: parent id to its Tune checkpoint
    and the model's path in it), fetched to a scratch directory; ``fingerprint``: the base's (``combine``)."""
    with tempfile.TemporaryDirectory(prefix="alignray-parents-") as scratch:
        parents = [(fetch_model(*sources[p], Path(scratch) / f"parent-{i}"), w)
                   for i, (p, w) in enumerate(zip(recipe.parents, recipe.weights, strict=True))]  # fmt: skip
        return combine(base, parents, out, fingerprint)


def derive(
    table: pd.DataFrame, config: SweepConfig, prompts: list[str], root: Path, resources: dict[str, float],
    sources: dict[str, tuple[Any, str]], say: Callable[[str], None],
    write_atomic: Callable[[Path, Callable[[Path], None]], None], fingerprint: str | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The derived candidates of ``table``'s feasible frontier (``pareto``, trained rows), each evaluated once on the
    search's ``prompts`` under ``root`` (done ones reused), then those an earlier run of the sweep evaluated under
    ``root`` from a frontier that has since moved, as results rows: kind, trial (the recipe's id), parents, weights,
    recipe, lambda, the parents' parameters where they share them, status, reason and metrics. ``sources``: each
    trained candidate's Tune checkpoint and model path; ``fingerprint``: the base policy's (``combine``). Each
    model the tasks built is kept at ``<root>/<id>/model/`` (``MODEL``) for the frontier to take
    (``alignray.sweep.frontier.keep_models``)."""
    import ray

    from alignray.sweep.trial import failure_reason, is_deterministic

    front = table[table["pareto"] & table["kind"].isin(["trial", "point"])]
    front = config.objective_pair[0].best_first(front)  # in order along the frontier
    recipes = derive_recipes(front, config.derive_lambdas, config.soups)
    waiting = [r for r in recipes if not is_done(root / r.id)]
    if waiting:
        say(f"4/6 derived candidates: {len(waiting)} of {len(recipes)} to build and evaluate from the "
            f"{len(front)} frontier models (λ {list(config.derive_lambdas)}{', soups' if config.soups else ''})")
        task = ray.remote(num_cpus=resources["cpu"], num_gpus=resources["gpu"], max_retries=config.max_failures)(
            build_and_evaluate
        )
        pending = {task.remote(r, {p: sources[p] for p in r.parents}, config, prompts, config.seed, fingerprint): r
                   for r in waiting}  # fmt: skip
        while pending:  # Ray runs as many at once as the cluster's resources hold
            [ready], _ = ray.wait(list(pending), num_returns=1)
            recipe = pending.pop(ready)
            directory = root / recipe.id
            directory.mkdir(parents=True, exist_ok=True)
            try:
                metrics, samples, files = ray.get(ready)
            except Exception as err:
                reason = failure_reason(err)
                if is_deterministic(err):
                    failure = json.dumps({"reason": reason}) + "\n"
                    write_atomic(directory / "failure.json", lambda p, f=failure: p.write_text(f))
                say(f"4/6 derived candidate {recipe.id} failed ({reason[:300]})")
                continue
            write_model(directory / MODEL, files)
            write_atomic(directory / "samples.parquet", lambda p, s=samples: s.to_parquet(p, index=False))
            record = {"recipe": dataclasses.asdict(recipe), "metrics": {k: float(v) for k, v in metrics.items()}}
            write_atomic(directory / "metrics.json", lambda p, r=record: p.write_text(json.dumps(r, indent=2) + "\n"))
    # and those an earlier run of this sweep evaluated from a frontier that has since moved: evaluated, they stay
    by_id = table.set_index("trial")
    earlier = []
    for path in sorted(root.glob("*/metrics.json")):
        record = json.loads(path.read_text())
        if path.parent.name in {r.id for r in recipes} or "recipe" not in record:
            continue
        recipe = Recipe(**{k: tuple(v) for k, v in record["recipe"].items()})
        if set(recipe.parents) <= set(by_id.index):
            earlier.append(recipe)
        else:  # its parents' trials are gone (the Tune experiment could not be restored): it cannot be confirmed
            say(f"4/6 derived candidate {recipe.id} left out: its parents {list(recipe.parents)} are no trials here")
    objectives = [o.metric for o in config.objective_pair]
    return pd.DataFrame([_row(r, root / r.id, by_id, objectives) for r in [*recipes, *earlier]])


MODEL = "model"
"""A derived candidate's model under its directory, as its task built it: kept for the frontier, deleted off it."""


def read_model(directory: Path) -> dict[str, bytes]:
    """A saved model's files by name, for a Ray task to hand back to the driver (``write_model`` writes them)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def write_model(directory: Path, files: dict[str, bytes]) -> Path:
    """Write a model's ``files`` (name to bytes, as a task returned them) to ``directory`` whole or not at all: into a
    scratch directory beside it, renamed into place."""
    scratch = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for name, data in files.items():
        (scratch / name).write_bytes(data)
    shutil.rmtree(directory, ignore_errors=True)
    scratch.rename(directory)
    return directory


def model_files(recipe: Recipe, sources: dict[str, tuple[Any, str]], base: str, fingerprint: str | None) -> dict:
    """Runs as a Ray task: the recipe's model (``build``) as its files by name, for the driver to write."""
    with tempfile.TemporaryDirectory(prefix="alignray-derive-") as scratch:
        return read_model(build(recipe, sources, base, Path(scratch) / MODEL, fingerprint))


def is_done(directory: Path) -> bool:
    """Whether a model's evaluation under ``directory`` (a derived candidate's, a confirmation unit's) is done: its
    ``metrics.json``, or a recorded ``failure.json``."""
    return (directory / "metrics.json").is_file() or (directory / "failure.json").is_file()


def _row(recipe: Recipe, directory: Path, table: pd.DataFrame, objectives: list[str]) -> dict[str, Any]:
    """A derived candidate's results row: the parameters its parents share, its recipe, its metrics or why none (an
    error, as for a trial, when an objective is not finite)."""
    parents = table.loc[list(recipe.parents)]
    shared = {k: parents[k].iloc[0] for k in PARAMETERS if k in parents and parents[k].nunique(dropna=False) == 1}
    row = {
        "trial": recipe.id, "kind": DERIVED, "parents": list(recipe.parents), "weights": list(recipe.weights),
        "recipe": recipe.text, "lambda": recipe.weights[0] if len(recipe.parents) == 1 else math.nan,
        **shared, "divergence": shared.get("divergence", "soup"),
    }  # fmt: skip
    if (directory / "metrics.json").is_file():
        metrics = json.loads((directory / "metrics.json").read_text())["metrics"]
        broken = {m: metrics.get(m) for m in objectives if not math.isfinite(metrics.get(m, math.nan))}
        if broken:
            return {**row, "status": "error", "reason": f"FloatingPointError: non-finite objectives {broken}",
                    **metrics}  # fmt: skip
        return {**row, "status": "ok", "reason": None, **metrics}
    failed = "not evaluated (--resume evaluates it)"
    if (directory / "failure.json").is_file():
        failed = json.loads((directory / "failure.json").read_text())["reason"]
    return {**row, "status": "error", "reason": failed[:500]}
