import pytest

from alignray.imdb import clean_review, load_reviews, split_reviews


@pytest.fixture(scope="module")
def reviews():
    return load_reviews()


def test_reviews_are_imdb_cleaned_and_unique(reviews):
    assert 24_800 < len(reviews) <= 25_000
    assert reviews["text"].is_unique
    assert set(reviews["label"]) == {0, 1}
    assert abs(reviews["label"].mean() - 0.5) < 0.01
    assert not reviews["text"].str.contains("<br", regex=False).any()


def test_clean_review_turns_html_breaks_into_newlines():
    assert clean_review("Good.<br /><br />Really  good.") == "Good.\n\nReally good."


def test_split_is_seeded_disjoint_and_complete(reviews):
    train, heldout = split_reviews(reviews, 0.1, seed=0)
    again_train, again_heldout = split_reviews(reviews, 0.1, seed=0)
    _, other_heldout = split_reviews(reviews, 0.1, seed=1)
    assert heldout["text"].tolist() == again_heldout["text"].tolist()
    assert train["text"].tolist() == again_train["text"].tolist()
    assert set(heldout["text"]) != set(other_heldout["text"])
    assert not set(train["text"]) & set(heldout["text"])
    assert len(train) + len(heldout) == len(reviews)
    assert len(heldout) == round(0.1 * len(reviews))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_fraction_outside_unit_interval(reviews, fraction):
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_reviews(reviews, fraction)
