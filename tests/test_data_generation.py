import pytest
import torch

from alignray.data.generation import sample_continuations
from alignray.data.prompts import imdb_prefix_prompts
from alignray.world import load_policy


@pytest.fixture(scope="module")
def policy(micro_world):
    out, _ = micro_world
    return load_policy(str(out / "policy"))


def test_imdb_prefix_prompts_take_2_to_8_tokens_of_distinct_reviews(policy):
    _, tokenizer = policy
    # The first two characters tell the reviews apart, and every token covers at least one character.
    reviews = [f"{chr(65 + i)}{chr(97 + i)} says the film was {'good' if i % 2 else 'bad'}" for i in range(26)]
    prompts = imdb_prefix_prompts(reviews, tokenizer, n=20, seed=3)
    assert len(prompts) == 20
    assert prompts == imdb_prefix_prompts(reviews, tokenizer, n=20, seed=3)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert min(lengths) >= 2 and max(lengths) <= 8 and len(set(lengths)) > 1
    assert len({p[:2] for p in prompts}) == 20
    assert all(any(r.startswith(p) for r in reviews) for p in prompts)
    with pytest.raises(ValueError, match="min_tokens"):
        imdb_prefix_prompts(reviews, tokenizer, n=2, min_tokens=5, max_tokens=2)


def test_sampling_is_batched_seeded_and_leaves_global_rng_alone(policy):
    model, tokenizer = policy
    prompts = ["the film", "a long and winding", "I"]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = sample_continuations(model, tokenizer, prompts, max_new_tokens=6, batch_size=2, seed=7)
    assert torch.equal(torch.rand(1), before)
    assert first == sample_continuations(model, tokenizer, prompts, max_new_tokens=6, batch_size=2, seed=7)
    assert first != sample_continuations(model, tokenizer, prompts, max_new_tokens=6, batch_size=2, seed=8)
    assert len(first) == 3


def test_sampling_refuses_right_padding(policy):
    model, tokenizer = policy
    tokenizer.padding_side = "right"
    try:
        with pytest.raises(ValueError, match="padding_side must be 'left'"):
            sample_continuations(model, tokenizer, ["x"])
    finally:
        tokenizer.padding_side = "left"
