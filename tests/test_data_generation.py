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


def test_sampling_restores_the_cuda_rng_states_too(policy, monkeypatch):
    """``torch.manual_seed`` reseeds every GPU as well; a fake CUDA records what is read and restored."""
    model, tokenizer = policy
    saved, restored = [torch.tensor([1, 2, 3], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)  # no device to seed
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    sample_continuations(model, tokenizer, ["the film", "I"], max_new_tokens=3, batch_size=1, seed=7)
    assert restored == [saved]
    assert torch.equal(torch.random.get_rng_state(), before)


def test_sampling_refuses_right_padding(policy):
    model, tokenizer = policy
    tokenizer.padding_side = "right"
    try:
        with pytest.raises(ValueError, match="padding_side must be 'left'"):
            sample_continuations(model, tokenizer, ["x"])
    finally:
        tokenizer.padding_side = "left"


def test_gumbel_max_sampling_draws_from_the_softmax():
    from alignray.data.generation import GumbelSampler

    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    draws = GumbelSampler()(None, logits.expand(200_000, 4).clone()).argmax(dim=1)
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(frequencies, logits.softmax(0), atol=4e-3, rtol=0)


def test_sampling_options_apply_top_k_before_the_noise(policy):
    from alignray.data.generation import sampling_options

    model, tokenizer = policy
    greedy = model.generate(
        **tokenizer(["the film"], return_tensors="pt"), max_new_tokens=5, do_sample=False, pad_token_id=0
    )
    top1 = model.generate(
        **tokenizer(["the film"], return_tensors="pt"), max_new_tokens=5, pad_token_id=0, **sampling_options(top_k=1)
    )
    assert torch.equal(greedy, top1)


@pytest.fixture(scope="module")
def imdb_split():
    from alignray.imdb import load_reviews, split_reviews

    return split_reviews(load_reviews())


def test_training_and_evaluation_prompts_come_from_disjoint_held_out_reviews(imdb_split):
    from alignray.data.prompts import EVAL_REVIEWS, imdb_prompt_reviews

    world_train, heldout = imdb_split
    train, evaluation = imdb_prompt_reviews("train"), imdb_prompt_reviews("eval")
    assert len(evaluation) == EVAL_REVIEWS and len(train) > 1000
    assert not set(train) & set(evaluation)
    assert set(train) | set(evaluation) <= set(heldout["text"])
    assert not (set(train) | set(evaluation)) & set(world_train["text"])
    with pytest.raises(ValueError, match="purpose='test'"):
        imdb_prompt_reviews("test")


@pytest.mark.parametrize("purpose", ["train", "eval"])
def test_each_prompt_pool_opens_as_many_positive_as_negative_reviews(imdb_split, purpose):
    from alignray.data.prompts import imdb_prompt_reviews

    label = dict(zip(imdb_split[1]["text"], imdb_split[1]["label"], strict=True))
    pool = imdb_prompt_reviews(purpose)
    assert sum(label[text] for text in pool) == len(pool) / 2
    # Shuffled, not sorted by label: any stretch of the pool is mixed too.
    assert 0.3 < sum(label[text] for text in pool[:100]) / 100 < 0.7


def test_the_same_seed_draws_the_same_pools():
    from alignray.data.prompts import imdb_prompt_reviews

    for purpose in ("train", "eval"):
        assert imdb_prompt_reviews(purpose, seed=0) == imdb_prompt_reviews(purpose, seed=0)
        assert set(imdb_prompt_reviews(purpose, seed=0)) != set(imdb_prompt_reviews(purpose, seed=1))


@pytest.mark.parametrize(
    ("eval_size", "message"), [(3, "eval_size=3 must be an even number"), (10, "eval_size=10 needs more than 5")]
)
def test_balanced_pools_name_an_impossible_eval_size(eval_size, message):
    import pandas as pd

    from alignray.data.prompts import label_balanced_pools

    reviews = pd.DataFrame({"text": [f"review {i}" for i in range(12)], "label": [0] * 5 + [1] * 7})
    with pytest.raises(ValueError, match=message):
        label_balanced_pools(reviews, eval_size)
