"""FDPOTrainer with shared, precomputed reference log-probs vs TRL's DPOTrainer defaults, on tiny-imdb.

One run, same pairs, same model, same precision (float32 on CPU, since both would use bf16 on a GPU):
  - TRL default: ``DPOTrainer``, reference forward at every step (``precompute_ref_log_probs=False``);
  - FDPO, first trial: scores the reference once before training (included in its time);
  - FDPO, next trials: find those reference log-probs in the data set's cache (TRL keys it by data and model
    fingerprints), as every trial of a sweep after the first does;
  - FDPO, next trials with TRL's fused LM head, to show the reference effect alone (on CPUs FDPOTrainer scores
    the policy from plain logits, about twice as fast as the chunked head, which pays off on GPUs).
pairs/s counts construction (tokenising, any precompute) and training. Achieved FLOP/s counts the model FLOPs of
training, 6·N per token of policy training plus 2·N per token of reference forward, against the FLOP/s of a
1024x1024 float32 matmul measured in the same run. Last line: ``RESULT trainer_speedup_vs_trl <ratio>``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from common import matmul_peak_flops  # bench/common.py
from trl import DPOConfig, DPOTrainer

from alignray.data.generation import sample_continuations
from alignray.data.prompts import imdb_prefix_prompts
from alignray.imdb import load_reviews, split_reviews
from alignray.train import load_preferences
from alignray.trainer import FDPOConfig, FDPOTrainer
from alignray.world import load_policy, load_reward


def build_pairs(n_prompts: int, path: Path) -> None:
    """Best-vs-worst of 2 samples per held-out IMDB prefix, scored by the tiny-imdb reward."""
    policy, tokenizer = load_policy("tiny-imdb")
    reward = load_reward("tiny-imdb")
    _, heldout = split_reviews(load_reviews())
    prompts = imdb_prefix_prompts(heldout["text"].tolist(), tokenizer, n_prompts, seed=0)
    first = sample_continuations(policy, tokenizer, prompts, max_new_tokens=40, seed=1)
    second = sample_continuations(policy, tokenizer, prompts, max_new_tokens=40, seed=2)
    score_a = reward.score([p + c for p, c in zip(prompts, first, strict=True)])
    score_b = reward.score([p + c for p, c in zip(prompts, second, strict=True)])
    rows = [
        {"prompt": p, "chosen": a if sa >= sb else b, "rejected": b if sa >= sb else a}
        for p, a, b, sa, sb in zip(prompts, first, second, score_a, score_b, strict=True)
    ]
    pd.DataFrame(rows).to_parquet(path)


def run(trainer_cls, args_cls, data, scratch: str, **kwargs) -> tuple[float, float, int]:
    """Seconds to build and train, seconds spent before training, and tokens per epoch of the pairs."""
    policy, tokenizer = load_policy("tiny-imdb")
    started = time.perf_counter()
    args = args_cls(
        scratch,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        per_device_train_batch_size=16,
        num_train_epochs=2,
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        max_length=64,
        **kwargs,
    )
    trainer = trainer_cls(model=policy.train(), args=args, train_dataset=data, processing_class=tokenizer)
    built = time.perf_counter()
    trainer.train()
    tokens = sum(
        2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset
    )
    return time.perf_counter() - started, built - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=256, help="preference pairs to train on (default: 256)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "pairs.parquet"
        build_pairs(args.pairs, path)
        data = load_preferences(path)
        pairs = len(data) * 2  # two epochs
        n_params = sum(p.numel() for p in load_policy("tiny-imdb")[0].parameters())
        peak = matmul_peak_flops()

        trl_seconds, _, tokens = run(DPOTrainer, DPOConfig, data, f"{scratch}/trl", precompute_ref_log_probs=False)
        first_seconds, precompute, _ = run(FDPOTrainer, FDPOConfig, data, f"{scratch}/first")
        shared_seconds, _, _ = run(FDPOTrainer, FDPOConfig, data, f"{scratch}/shared")
        fused_seconds, _, _ = run(FDPOTrainer, FDPOConfig, data, f"{scratch}/fused", fused_lm_head=True)

    # tokens counts prompt+chosen and prompt+rejected of each pair once per epoch
    trl_flops = (6 + 2) * n_params * tokens * 2 / trl_seconds
    shared_flops = 6 * n_params * tokens * 2 / shared_seconds
    print(f"pairs: {len(data)} x 2 epochs, {tokens} tokens per epoch, policy {n_params / 1e6:.2f}M parameters")
    print(f"matmul peak (1024x1024 float32): {peak / 1e9:.1f} GFLOP/s")
    print(f"TRL DPOTrainer defaults   : {pairs / trl_seconds:7.1f} pairs/s  {trl_flops / peak:6.1%} of peak")
    print(
        f"FDPO, first trial          : {pairs / first_seconds:7.1f} pairs/s  (reference scored in {precompute:.1f} s)"
    )
    print(f"FDPO, reference shared     : {pairs / shared_seconds:7.1f} pairs/s  {shared_flops / peak:6.1%} of peak")
    print(f"FDPO, shared, TRL's fused LM head: {pairs / fused_seconds:7.1f} pairs/s (the reference effect alone)")
    print(f"speedup first trial vs TRL : {trl_seconds / first_seconds:.2f}x")
    print(f"speedup from sharing the reference alone (fused head in both): {trl_seconds / fused_seconds:.2f}x")
    print(f"RESULT trainer_speedup_vs_trl {trl_seconds / shared_seconds:.2f}")


if __name__ == "__main__":
    main()
