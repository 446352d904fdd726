"""Generated-and-scored samples/s: the Ray Data pipeline against the seeds' one-prompt-at-a-time loop, on tiny-imdb.

One run, the same held-out IMDB prompts and the same number of samples for every contender:
  (a) the seeds' loop at the pipeline's sampling settings: ``generate`` for one prompt, then score that text alone;
  (b) the seeds' loop at seed 002's settings: beam search 5 with sampling, 50 new tokens;
  the pipeline (``alignray.data.pipeline.run_stages``) with 1 and with 2 generation actors, timed from the call
  (actors start and load their models inside the timing) on a Ray instance started before it. That start-up is
  ~15 s on 2 cores whatever the sample count, so the pipeline's advantage grows with it: it is also printed as the
  marginal rate, from a second, 8-sample run subtracted out.
Achieved generation FLOP/s counts 2·N per generated token (KV cache) against a 1024x1024 float32 matmul measured in
the same run. Last line: ``RESULT data_speedup_vs_seed_loop <pipeline vs (a)>``.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from common import matmul_peak_flops  # bench/common.py

from alignray.data.pipeline import run_stages
from alignray.data.prompts import imdb_prefix_prompts
from alignray.imdb import load_reviews, split_reviews
from alignray.world import PRESETS, load_policy, load_reward

MAX_NEW_TOKENS = 48


@torch.inference_mode()
def seed_loop(prompts: list[str], **generate_options) -> tuple[float, int]:
    """The seeds' way: one prompt, one ``generate``, one reward call at a time. Returns (seconds, new tokens)."""
    model, tokenizer = load_policy("tiny-imdb")
    reward = load_reward("tiny-imdb")
    torch.manual_seed(0)
    started, new_tokens = time.perf_counter(), 0
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        out = model.generate(**ids, pad_token_id=tokenizer.pad_token_id, **generate_options)
        completion = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        reward.score([prompt + completion])
        new_tokens += out.shape[1] - ids["input_ids"].shape[1]
    return time.perf_counter() - started, new_tokens


def pipeline(prompts: list[str], generation_actors: int) -> tuple[float, int]:
    started = time.perf_counter()
    samples = run_stages(
        prompts,
        PRESETS["tiny-imdb"]["policy"],
        "tiny-imdb",
        samples_per_prompt=1,
        max_new_tokens=MAX_NEW_TOKENS,
        seed=0,
        generation_actors=generation_actors,
        scoring_actors=1,
    )
    seconds = time.perf_counter() - started
    return seconds, int(samples["completion_ids"].map(len).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1024, help="samples per contender (default: 1024)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    import ray

    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    _, tokenizer = load_policy("tiny-imdb")
    _, heldout = split_reviews(load_reviews())
    prompts = imdb_prefix_prompts(heldout["text"].tolist(), tokenizer, args.samples, seed=0)
    n_params = sum(p.numel() for p in load_policy("tiny-imdb")[0].parameters())
    peak = matmul_peak_flops()

    sampling = {"do_sample": True, "top_k": 0, "top_p": 1.0, "max_new_tokens": MAX_NEW_TOKENS}
    loop_a, tokens_a = seed_loop(prompts, **sampling)
    loop_b, _ = seed_loop(prompts, do_sample=True, num_beams=5, max_new_tokens=50)
    one_actor, _ = pipeline(prompts, generation_actors=1)
    two_actors, tokens_p = pipeline(prompts, generation_actors=2)
    startup, _ = pipeline(prompts[:8], generation_actors=1)
    best = min(one_actor, two_actors)
    ray.shutdown()

    n = len(prompts)
    share_a = 2 * n_params * tokens_a / loop_a / peak
    share_p = 2 * n_params * tokens_p / two_actors / peak
    marginal = (n - 8) / (one_actor - startup)
    print(f"{n} samples of up to {MAX_NEW_TOKENS} tokens; policy {n_params / 1e6:.2f}M parameters")
    print(f"matmul peak (1024x1024 float32): {peak / 1e9:.1f} GFLOP/s")
    print(f"(a) seed loop, same sampling      : {n / loop_a:7.1f} samples/s  {share_a:6.2%} of peak")
    print(f"(b) seed loop, beam 5 + sampling  : {n / loop_b:7.1f} samples/s")
    print(f"pipeline, 1 generation actor      : {n / one_actor:7.1f} samples/s")
    print(f"pipeline, 2 generation actors     : {n / two_actors:7.1f} samples/s  {share_p:6.2%} of peak")
    print(f"pipeline start-up (8 samples)     : {startup:.1f} s; marginal rate {marginal:.1f} samples/s")
    print(f"2 vs 1 actors: {one_actor / two_actors:.2f}x;  pipeline vs (b): {loop_b / best:.1f}x")
    print(f"RESULT data_speedup_vs_seed_loop {loop_a / best:.2f}")


if __name__ == "__main__":
    main()
