"""Reward scoring as a Ray Data stage: an actor holding the reward model scores prompt + completion."""

from __future__ import annotations

import pandas as pd
import torch

__all__ = ["Scorer"]


class Scorer:
    """Ray Data actor: adds ``reward`` (the POSITIVE logit) and ``positive`` (the classifier's call) to each row."""

    def __init__(self, reward: str, threads: int | None = None, batch_size: int = 64) -> None:
        from alignray.world import load_reward, quiet_libraries

        quiet_libraries()  # an actor's loading bars and warnings would reach the job log once per actor
        if threads:
            torch.set_num_threads(threads)
        self.reward = load_reward(reward)
        self.batch_size = batch_size

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = (batch["prompt"] + batch["completion"]).tolist()
        logits = self.reward.logits(texts, self.batch_size)
        index = self.reward.positive_index
        return batch.assign(reward=logits[:, index], positive=logits.argmax(axis=1) == index)
