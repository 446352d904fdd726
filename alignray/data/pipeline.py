"""The Ray Data pipeline: prompts → generation actors → scoring actors → pairs, and the same stages for evaluation.

Actor pools hold the models; on GPUs each actor takes half a GPU (one generator and one scorer per device), on CPUs
the cluster's CPUs are shared out among the actors and each sets its torch threads to match (``_actor_resources``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from alignray.data.config import PreferenceConfig
from alignray.data.generation import Generator
from alignray.data.pairing import make_pairs
from alignray.data.prompts import imdb_prefix_prompts, imdb_prompt_reviews, read_prompt_file
from alignray.data.scoring import Scorer

__all__ = ["build_preferences", "check_against_policy", "load_prompts", "run_stages", "run_stages_here"]


def load_prompts(config: PreferenceConfig, tokenizer=None) -> list[str]:
    """The prompt set the config names (``imdb_prefix`` prompts are cut with the policy's tokenizer: ``tokenizer``
    when it is already loaded)."""
    if config.prompts == "fixed":
        prompts = list(config.fixed_prompts) or read_prompt_file(str(config.prompt_file))
    elif config.prompts == "file":
        prompts = read_prompt_file(str(config.prompt_file), config.prompt_column)
    else:
        from alignray.world import load_tokenizer

        tokenizer = tokenizer or load_tokenizer(config.policy, "policy")
        reviews = imdb_prompt_reviews("train")
        prompts = imdb_prefix_prompts(
            reviews, tokenizer, config.num_prompts, config.seed, config.min_prompt_tokens, config.max_prompt_tokens
        )
    if not prompts:
        source = f"prompt_file={config.prompt_file!r}" if config.prompt_file else f"prompts={config.prompts!r}"
        raise ValueError(f"{source} gives no prompts; expected at least one non-empty prompt (a .txt: one a line)")
    return prompts[: config.num_prompts]


def check_against_policy(config: PreferenceConfig) -> None:
    """Refuse prompts plus ``max_new_tokens`` beyond the policy's context (its config.json), before any model loads
    or Ray starts; a ValueError naming the field, its value and the limit. Prompts of a fixed or file source are read
    and tokenised to find the longest."""
    from alignray.world import load_tokenizer, policy_context

    context = policy_context(config.policy)
    if config.prompts == "imdb_prefix":
        prompt = config.max_prompt_tokens
    else:
        tokenizer = load_tokenizer(config.policy, "policy")
        prompt = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in load_prompts(config))
    if prompt + config.max_new_tokens > context:
        raise ValueError(
            f"max_new_tokens={config.max_new_tokens} after prompts of up to {prompt} tokens exceeds the "
            f"{context}-token context of policy={config.policy!r}; use max_new_tokens <= {context - prompt}"
        )


def _actor_resources(generation_actors: int | None, scoring_actors: int | None, use_gpu: bool | None) -> dict:
    """Pool sizes, Ray resources and torch threads of the two stages.

    On GPUs each actor takes half a device. On CPUs a scorer is counted as half a CPU (scoring a text costs about a
    tenth of generating it) and the generation actors share the rest, each with as many torch threads.
    """
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if use_gpu is not False else 0
    if use_gpu and not gpus:
        raise ValueError("use_gpu=True but the Ray cluster has no GPU")
    cpus = resources.get("CPU", 1.0)
    if gpus:
        per_actor = {"num_gpus": 0.5, "num_cpus": 1}
        return {
            "generation": (generation_actors or gpus, per_actor, None),
            "scoring": (scoring_actors or gpus, per_actor, None),
        }
    scorers = scoring_actors or 1
    generators = generation_actors or max(1, int(cpus - 0.5 * scorers))
    # An actor lives on one node: a share beyond the largest node's CPUs would wait for ever.
    largest = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=cpus)
    share = min(max(cpus - 0.5 * scorers, 0.5) / generators, largest)
    return {
        "generation": (generators, {"num_cpus": share}, max(1, round(share))),
        "scoring": (scorers, {"num_cpus": 0.5}, 1),
    }


def _row_blocks(prompts: list[str], samples_per_prompt: int, batch_size: int) -> list[pd.DataFrame]:
    """Rows (row, prompt_id, prompt), ``samples_per_prompt`` per prompt, cut into blocks of ``batch_size``.

    One block per batch: which rows share a batch, and so each batch's seed, never depends on scheduling.
    """
    rows = pd.DataFrame(
        {
            "prompt_id": np.repeat(np.arange(len(prompts)), samples_per_prompt),
            "prompt": np.repeat(np.asarray(prompts, dtype=object), samples_per_prompt),
        }
    )
    rows.insert(0, "row", np.arange(len(rows)))
    return [rows.iloc[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def run_stages(
    prompts: list[str],
    policy: str,
    reward: str,
    samples_per_prompt: int,
    max_new_tokens: int,
    seed: int,
    sampling: dict | None = None,
    reference: str | None = None,
    batch_size: int = 128,
    generation_actors: int | None = None,
    scoring_actors: int | None = None,
    use_gpu: bool | None = None,
    judge: str | None = None,
) -> pd.DataFrame:
    """Generate ``samples_per_prompt`` completions per prompt and score them, on Ray Data actor pools.

    Returns one row per sample, in prompt order: row, prompt_id, prompt, completion, completion_ids, reward,
    positive (with ``reference``: logp, entropy, ref_logp, tokens, see ``generate_batch``; with ``judge``: judge,
    judge_positive).
    """
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    plan = _actor_resources(generation_actors, scoring_actors, use_gpu)
    blocks = _row_blocks(prompts, samples_per_prompt, batch_size)
    generation_size, generation_resources, generation_threads = plan["generation"]
    scoring_size, scoring_resources, scoring_threads = plan["scoring"]
    dataset = (
        ray.data.from_pandas(blocks)
        .map_batches(
            Generator,
            fn_constructor_kwargs={
                "policy": policy,
                "max_new_tokens": max_new_tokens,
                "seed": seed,
                "sampling": sampling,
                "reference": reference,
                "threads": generation_threads,
            },
            batch_size=batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=min(generation_size, len(blocks))),
            **generation_resources,
        )
        .map_batches(
            Scorer,
            fn_constructor_kwargs={"reward": reward, "threads": scoring_threads, "judge": judge},
            batch_size=batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=min(scoring_size, len(blocks))),
            **scoring_resources,
        )
    )
    return dataset.to_pandas().sort_values("row").reset_index(drop=True)


def run_stages_here(
    prompts: list[str],
    policy: str,
    reward: str,
    samples_per_prompt: int,
    max_new_tokens: int,
    seed: int,
    sampling: dict | None = None,
    reference: str | None = None,
    batch_size: int = 128,
    threads: int | None = None,
    progress: bool = False,
    judge: str | None = None,
) -> pd.DataFrame:
    """``run_stages`` in this process: the same ``Generator`` and ``Scorer`` on the same blocks, so the same seed
    gives the same samples. What a sweep trial runs: Ray Data actors would run outside the trial's resources."""
    from tqdm.auto import tqdm

    generator = Generator(policy, max_new_tokens, seed, sampling, reference, threads)
    scorer = Scorer(reward, threads, judge=judge)
    blocks = _row_blocks(prompts, samples_per_prompt, batch_size)
    scored = [scorer(generator(block)) for block in tqdm(blocks, desc="evaluate", disable=not progress)]
    return pd.concat(scored, ignore_index=True)


def build_preferences(config: PreferenceConfig, tokenizer=None) -> tuple[pd.DataFrame, dict]:
    """Generate, score and pair; write ``<out>/preferences.parquet`` and ``<out>/card.json``; return both
    (``tokenizer``: the policy's, when it is already loaded).

    ``check_against_policy`` runs first: lengths the policy cannot hold fail before Ray starts."""
    started = time.monotonic()
    check_against_policy(config)
    prompts = load_prompts(config, tokenizer)
    samples = run_stages(
        prompts,
        config.policy,
        config.reward,
        config.samples_per_prompt,
        config.max_new_tokens,
        config.seed,
        sampling=config.sampling,
        batch_size=config.batch_size,
        generation_actors=config.generation_actors,
        scoring_actors=config.scoring_actors,
        use_gpu=config.use_gpu,
    )
    pairs = make_pairs(samples, config.strategy, config.min_margin, config.seed, **config.strategy_params)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(out / "preferences.parquet", index=False)
    samples.drop(columns=["completion_ids"]).to_parquet(out / "samples.parquet", index=False)
    card = {
        "config": asdict(config),
        "seed": config.seed,
        "counts": {"prompts": len(prompts), "samples": len(samples), "pairs": len(pairs)},
        "rewards": {
            "samples": _stats(samples["reward"]),
            "chosen": _stats(pairs["chosen_reward"]),
            "rejected": _stats(pairs["rejected_reward"]),
            "samples_positive_fraction": float(samples["positive"].mean()),
        },
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return pairs, card


def _stats(values: pd.Series) -> dict[str, float]:
    if values.empty:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
