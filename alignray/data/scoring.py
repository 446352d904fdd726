"""Reward scoring as a Ray Data stage: an actor holding the reward model (and the judge, if any) scores prompt +
completion."""

from __future__ import annotations

import pandas as pd
import torch

__all__ = ["Scorer"]


class Scorer:
    """Ray Data actor: adds ``reward`` (the POSITIVE logit) and ``positive`` (the classifier's call) to each row, and
    with a ``judge`` its ``judge`` and ``judge_positive`` the same way."""

    def __init__(
        self, reward: str, threads: int | None = None, batch_size: int = 64, judge: str | None = None
    ) -> None:
        from alignray.world import load_reward, quiet_libraries

        quiet_libraries()  # an actor's loading bars and warnings would reach the job log once per actor
        if threads:
            torch.set_num_threads(threads)
        self.reward = load_reward(reward)
        self.judge = load_reward(judge, role="judge") if judge else None
        self.batch_size = batch_size

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = (batch["prompt"] + batch["completion"]).tolist()
        logits = self.reward.logits(texts, self.batch_size)
        index = self.reward.positive_index
        batch = batch.assign(reward=logits[:, index], positive=logits.argmax(axis=1) == index)
        if self.judge is None:
            return batch
        logits, index = self.judge.logits(texts, self.batch_size), self.judge.positive_index
        return batch.assign(judge=logits[:, index], judge_positive=logits.argmax(axis=1) == index)
