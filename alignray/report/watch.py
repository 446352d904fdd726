"""The reward-hacking watch: for each frontier model, the word n-grams whose share of texts rose most against the base
policy's samples, and whether reward rose together with the non-word rate.

A reward model that pays for a string ("/10" after a word, a repeated phrase) teaches the policy to write it; the
string then appears in far more of the model's completions than of the base policy's. The watch counts, per policy,
the share of completions holding each 1- and 2-gram of lowercase tokens (``tokens``), and lists the n-grams with the
largest rise, among those in at least ``min_texts`` of the model's completions. A token is a run of letters or digits
(with an inner apostrophe), or a symbol together with the digits that follow it ("/10", "$5"); other symbols are
tokens of their own.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Iterable

import pandas as pd

from alignray.report.experiment import BASE, Experiment
from alignray.report.formatting import label

__all__ = ["NONWORD", "NONWORD_RISE", "NgramRise", "Watch", "ngram_shares", "tokens", "watch_info", "watched_reward"]

NONWORD = "fluency/nonword_rate"
"""The share of words outside the reference vocabulary; when it rose with reward, the watch says so."""
PSEUDO_TEXTS = 5
"""Texts added to both sides of an n-gram's lift (a prior): below ~5 texts a rise is noise on 256 samples."""
NONWORD_RISE = 0.025
"""The rise in the non-word rate over the base policy's beyond which the watch warns (half the default fluency
allowance, ``max_nonword_increase`` 0.05)."""
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]\d+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """The lowercase tokens of ``text``: "Great/10, isn't it?" -> ["great", "/10", ",", "isn't", "it", "?"]."""
    return _WORD.findall(text.lower())


def ngram_shares(texts: Iterable[str], sizes: tuple[int, ...] = (1, 2)) -> tuple[Counter[str], int]:
    """How many of ``texts`` hold each n-gram of their words (n in ``sizes``, words joined by a space), and how many
    texts there were."""
    counts: Counter[str] = Counter()
    total = 0
    for text in texts:
        found = tokens(text)
        counts.update({" ".join(found[i : i + n]) for n in sizes for i in range(len(found) - n + 1)})
        total += 1
    return counts, total


@dataclasses.dataclass(frozen=True)
class NgramRise:
    """One n-gram: the share of the model's texts holding it (and their number), and the base policy's share."""

    ngram: str
    share: float
    base_share: float
    texts: int

    @property
    def rise(self) -> float:
        return self.share - self.base_share


@dataclasses.dataclass(frozen=True)
class Watch:
    """One frontier model's watch: its most risen n-grams (largest rise first), its reward and non-word rate beside
    the base policy's (NaN where not recorded)."""

    trial: str
    label: str
    rises: tuple[NgramRise, ...]
    reward: tuple[float, float]
    nonword: tuple[float, float]

    @property
    def fluency_warning(self) -> bool:
        """Reward rose against the base policy, and the non-word rate by more than ``NONWORD_RISE``: every DPO
        trial writes a few more non-words than its base, so a smaller rise is no sign of a hack."""
        (base_reward, reward), (base_nonword, nonword) = self.reward, self.nonword
        return all(math.isfinite(v) for v in (*self.reward, *self.nonword)) and (
            reward > base_reward and nonword - base_nonword > NONWORD_RISE
        )


def _number(value: object) -> float:
    """A recorded metric as a float; NaN when it was not recorded."""
    return math.nan if value is None or pd.isna(value) else float(value)


def _rises(texts: pd.Series, base: tuple[Counter[str], int], top: int, min_texts: int) -> tuple[NgramRise, ...]:
    """The n-grams ranked by their lift over the base: the log ratio of their shares of texts, ``PSEUDO_TEXTS`` texts
    added to each side, so that an n-gram in a handful of texts cannot rank by chance, while a string that went from
    1% to 4% of texts ("/10") outranks a common word that went from 59% to 66% ("a")."""
    counts, total = ngram_shares(texts.fillna("").astype(str))
    base_counts, base_total = base

    def lift(rise: NgramRise) -> float:
        base_texts = base_counts.get(rise.ngram, 0)
        return math.log((rise.texts + PSEUDO_TEXTS) / (total + 2 * PSEUDO_TEXTS)) - math.log(
            (base_texts + PSEUDO_TEXTS) / (base_total + 2 * PSEUDO_TEXTS)
        )

    found = [
        NgramRise(gram, count / total, base_counts.get(gram, 0) / max(base_total, 1), count)
        for gram, count in counts.items()
        if count >= min_texts
    ]
    found = [r for r in found if r.rise > 0]
    return tuple(sorted(found, key=lambda r: (-lift(r), -r.share, r.ngram))[:top])


def watched_reward(experiment: Experiment) -> str:
    """The reward the watch reads: the first objective that is a reward metric (``reward/...``), else reward/mean."""
    return next((o.metric for o in experiment.objectives if o.metric.startswith("reward/")), "reward/mean")


def watch_info(
    experiment: Experiment, loaded: dict[str, pd.DataFrame], top: int = 5, min_texts: int = 2
) -> tuple[Watch, ...]:
    """Gather the watch of each frontier model whose samples are in ``loaded``, against the base policy's samples
    (none without them): its ``top`` n-grams by rise in the share of texts holding them, each in at least
    ``min_texts`` of its texts, and its reward and non-word rate beside the base policy's."""
    base = loaded.get(BASE)
    if base is None:
        return ()
    base_counts = ngram_shares(base["completion"].fillna("").astype(str))
    reward = watched_reward(experiment)
    out = []
    for _, row in experiment.frontier.iterrows():
        samples = loaded.get(row["trial"])
        if samples is None:
            continue
        # the search's figures, which the samples read here gave (a confirmed row holds them as search/<metric>)
        rewards = (_number(experiment.base.get(reward)), _number(row.get(f"search/{reward}", row.get(reward))))
        nonwords = (_number(experiment.base.get(NONWORD)), _number(row.get(f"search/{NONWORD}", row.get(NONWORD))))
        rises = _rises(samples["completion"], base_counts, top, min_texts)
        out.append(Watch(row["trial"], label(row), rises, rewards, nonwords))
    return tuple(out)
