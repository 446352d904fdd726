import pandas as pd
import pytest

from alignray import vocabulary
from alignray.vocabulary import MIN_COUNT, build_vocabulary, load_vocabulary, words


@pytest.fixture(autouse=True)
def fresh_vocabulary():
    """Each test loads its vocabulary anew and leaves no fake one in the process cache for the next."""
    load_vocabulary.cache_clear()
    yield
    load_vocabulary.cache_clear()


def test_words_are_lowercased_letter_runs_with_one_inner_apostrophe():
    text = "Don't STOP: fash110102 rated it 9/10, the film's end... 'quoted' rock'n'roll"
    assert words(text) == ["don't", "stop", "fash", "rated", "it", "the", "film's", "end", "quoted", "rock'n", "roll"]


def test_build_keeps_words_seen_at_least_min_count_times():
    assert build_vocabulary(["the film, the END", "a film"]) == {"the", "film"}
    assert build_vocabulary(["the film, the END", "a film"], min_count=1) == {"the", "film", "end", "a"}


def test_a_word_list_file_is_the_vocabulary(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("Movie\n  film \n\nthe\n")
    assert load_vocabulary(str(path)) == {"movie", "film", "the"}
    assert load_vocabulary(path) == {"movie", "film", "the"}
    with pytest.raises(FileNotFoundError, match="vocabulary file .*missing.txt' does not exist; give a word list"):
        load_vocabulary(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="empty.txt' holds no words"):
        load_vocabulary(str(tmp_path / "empty.txt"))


def _tiny_reviews() -> pd.DataFrame:
    once = ["".join(chr(ord("k") + int(digit)) for digit in f"{i:02d}") for i in range(20)]  # kk, kl, ..., mt
    texts = [f"the film {word} was good, the end" for word in once]
    return pd.DataFrame({"text": texts, "label": [i % 2 for i in range(20)]})


def test_the_default_vocabulary_is_cached_as_a_word_list_and_read_back_without_rebuilding(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNRAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vocabulary, "load_reviews", _tiny_reviews)
    built = []
    monkeypatch.setattr(vocabulary, "build_vocabulary", lambda texts: built.append(1) or build_vocabulary(texts))
    first = load_vocabulary()
    assert first == {"the", "film", "was", "good", "end"} and len(built) == 1  # each review's own word occurs once
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.name.startswith("vocabulary-imdb-") and cached.read_text() == "end\nfilm\ngood\nthe\nwas\n"
    load_vocabulary.cache_clear()  # a new process: only the file remains
    assert load_vocabulary() == first and len(built) == 1
    monkeypatch.setattr(vocabulary, "_RECIPE", vocabulary._RECIPE + " changed")
    load_vocabulary.cache_clear()
    assert load_vocabulary() == first and len(built) == 2  # another recipe, another key: built again
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_an_unwritable_cache_builds_in_memory(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("ALIGNRAY_CACHE", str(blocked / "cache"))
    monkeypatch.setattr(vocabulary, "load_reviews", _tiny_reviews)
    assert load_vocabulary() == {"the", "film", "was", "good", "end"}
    assert blocked.read_text() == "not a directory"


def test_the_default_vocabulary_holds_the_imdb_training_split_s_words(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNRAY_CACHE", str(tmp_path))
    found = load_vocabulary()
    assert {"movie", "film", "the", "don't"} <= found and 40_000 < len(found) < 60_000
    assert "etoopelroemilutchmarnardyty" not in found and "fash" not in found
    assert MIN_COUNT == 2
    load_vocabulary.cache_clear()
    assert load_vocabulary() == found  # read back from the file just written
