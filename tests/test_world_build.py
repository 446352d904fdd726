import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

from alignray.world import load_reward, load_tokenizer
from alignray.world_build import (
    BUILDS,
    WorldBuild,
    _reward_views,
    _soft_cross_entropy,
    check_reward_only,
    longest_schedule,
    measure,
    measure_world,
    perplexity,
    policy_classifier,
    policy_schedules,
    rebuild_reward,
    reward_tokenizer,
    schedule_lines,
    target_lines,
    teacher_probabilities,
    train_tokenizer,
    world_reviews,
    write_model_card,
)

ROOT = Path(__file__).resolve().parents[1]


def test_micro_build_writes_loadable_safetensors_models_and_a_card(micro_world):
    out, card = micro_world
    for role in ("policy", "reward"):
        assert (out / role / "model.safetensors").is_file()
        assert (out / role / "tokenizer.json").is_file()
        assert not list((out / role).glob("*.bin"))
    assert not (out / ".scratch").exists()
    saved = json.loads((out / "build.json").read_text())
    assert saved["figures"] == card["figures"]
    assert card["split"]["train"] == BUILDS["micro"].max_reviews  # a subsample of the full split's training side


def test_the_saved_models_have_the_sizes_asked_for_and_the_card_counts_them(micro_world):
    """Parameter counts from the architecture's formulas: a build that ignored a size, or a card that counted
    another model, would differ."""
    out, card = micro_world
    build = BUILDS["micro"]
    policy = json.loads((out / "policy" / "config.json").read_text())
    assert (policy["n_embd"], policy["n_layer"], policy["n_head"], policy["n_positions"]) == (
        build.policy_dim, build.policy_layers, build.policy_heads, build.policy_context
    )  # fmt: skip
    vocab, d = policy["vocab_size"], build.policy_dim
    assert vocab == len(load_tokenizer(str(out / "policy"))) <= build.vocab_size
    gpt2 = (vocab + build.policy_context) * d + build.policy_layers * (12 * d * d + 13 * d) + 2 * d  # lm_head tied
    assert card["parameters"]["policy"] == gpt2
    # the reward is the policy's network with a 2-way head and its own position table; the judge a DistilBERT
    reward = json.loads((out / "reward" / "config.json").read_text())
    shape = (reward["n_embd"], reward["n_layer"], reward["n_positions"])
    assert shape == (d, build.policy_layers, build.reward_max_length)
    classifier = (vocab + build.reward_max_length) * d + build.policy_layers * (12 * d * d + 13 * d) + 2 * d + 2 * d
    assert card["parameters"]["reward"] == classifier
    judge = json.loads((out / "judge" / "config.json").read_text())
    d, hidden = build.judge_dim, build.judge_hidden
    assert (judge["dim"], judge["n_layers"], judge["hidden_dim"]) == (d, build.judge_layers, hidden)
    layer = 4 * (d * d + d) + 2 * d * hidden + hidden + d + 4 * d
    distilbert = (vocab + build.judge_max_length) * d + 2 * d + build.judge_layers * layer + d * d + d + 2 * d + 2
    assert card["parameters"]["judge"] == distilbert


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(micro_world):
    out, _ = micro_world
    model = GPT2LMHeadModel.from_pretrained(out / "policy")
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied lm_head: every logit 0, every next token 1/V
    blocks = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(5, 12))
    assert perplexity(model, blocks, batch_size=2) == pytest.approx(model.config.vocab_size, rel=1e-5)


def test_perplexity_is_exp_of_the_mean_next_token_loss_over_all_blocks(micro_world):
    out, _ = micro_world
    model = GPT2LMHeadModel.from_pretrained(out / "policy").eval()
    blocks = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(5, 12))
    with torch.no_grad():
        log_probs = model(torch.as_tensor(blocks)).logits[:, :-1].log_softmax(-1)
    targets = torch.as_tensor(blocks)[:, 1:, None]
    expected = math.exp(-log_probs.gather(-1, targets).mean().item())
    for batch_size in (1, 2, 32):  # batches of unequal size weigh by their tokens
        assert perplexity(model, blocks, batch_size=batch_size) == pytest.approx(expected, rel=1e-5)


class _FirstLetterReward:
    """A stand-in reward: POSITIVE exactly when the text starts with "P"."""

    positive_index = 1

    def logits(self, texts: list[str]) -> np.ndarray:
        return np.array([[0.0, 1.0] if t.startswith("P") else [1.0, 0.0] for t in texts], dtype=np.float32)

    def is_positive(self, texts: list[str]) -> np.ndarray:
        return self.logits(texts).argmax(axis=1) == self.positive_index


def test_measure_reports_the_reward_accuracy_on_held_out_reviews(micro_world):
    out, _ = micro_world
    build = BUILDS["micro"]
    policy = GPT2LMHeadModel.from_pretrained(out / "policy").eval()
    tokenizer = load_tokenizer(str(out / "policy"))
    texts = [f"{'P' if i % 2 else 'N'}{chr(97 + i)} this film was fine" for i in range(build.eval_reviews)]
    labels = [int(t.startswith("P")) for t in texts]
    labels[:4] = [1 - label for label in labels[:4]]  # 4 of 16 labels the stand-in reward gets wrong
    heldout = pd.DataFrame({"text": texts, "label": labels})
    figures = measure(build, policy, tokenizer, _FirstLetterReward(), heldout)
    assert figures["reward_heldout_reviews"] == build.eval_reviews
    assert figures["reward_heldout_accuracy"] == pytest.approx(12 / 16)
    assert figures["policy_samples"] == build.eval_prompts


def test_the_classifiers_labels_match_lvwerra_distilbert_imdb(micro_world):
    out, _ = micro_world
    architectures = {}
    for role in ("reward", "judge"):
        config = json.loads((out / role / "config.json").read_text())
        assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
        architectures[role] = config["architectures"]
    assert architectures == {
        "reward": ["GPT2ForSequenceClassification"], "judge": ["DistilBertForSequenceClassification"]
    }  # fmt: skip


def test_the_reward_starts_from_every_layer_of_the_policy_and_the_judge_from_its_words(micro_world):
    out, _ = micro_world
    policy = load_file(out / "policy" / "model.safetensors")
    reward = load_file(out / "reward" / "model.safetensors")
    judge = load_file(out / "judge" / "model.safetensors")
    names = ("wte.weight", "h.0.attn.c_attn.weight", "h.0.mlp.c_fc.weight")
    pairs = [(policy[f"transformer.{name}"], reward[f"transformer.{name}"]) for name in names]
    pairs.append((policy["transformer.wte.weight"], judge["distilbert.embeddings.word_embeddings.weight"]))
    for started, trained in pairs:
        assert started.shape == trained.shape
        # Trained since the copy, so close in bulk but not identical.
        assert not torch.equal(started, trained)
        assert torch.nn.functional.cosine_similarity(started.flatten(), trained.flatten(), dim=0) > 0.5


def test_a_policy_classifier_is_the_policy_with_a_head_reading_a_stretched_position_table():
    config = GPT2Config(vocab_size=50, n_positions=8, n_embd=16, n_layer=2, n_head=2, pad_token_id=0)
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(config).eval()
    torch.manual_seed(1)
    model = policy_classifier(policy, max_length=15, pad_token_id=0).eval()
    body, source = model.transformer.state_dict(), policy.transformer.state_dict()
    assert all(torch.equal(body[k], source[k]) for k in source if k != "wpe.weight")
    table, stretched = source["wpe.weight"], body["wpe.weight"]
    assert stretched.shape == (15, 16) and model.config.n_positions == 15
    # 8 positions spread over 15: every other row is the old one, and the rows between are their means
    assert torch.allclose(stretched[::2], table) and torch.allclose(stretched[1::2], (table[:-1] + table[1:]) / 2)
    assert torch.equal(policy_classifier(policy, 5, 0).transformer.wpe.weight, table[:5])  # shorter: cut, not squeezed
    # it classifies from the last token that is not padding: right padding in a batch of mixed lengths changes nothing
    short, long = [0, 7, 9, 11], [0, 5, 6, 7, 8, 9]
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([ids])).logits for ids in (short, long)])
        mask = torch.tensor([[1] * 4 + [0] * 2, [1] * 6])
        batch = model(input_ids=torch.tensor([short + [0, 0], long]), attention_mask=mask)
    assert torch.allclose(alone, batch.logits, atol=1e-5) and not torch.allclose(alone[0], alone[1])
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}


def test_the_policy_trains_with_the_build_s_dropout_and_its_classifier_with_gpt2_s(micro_world, tmp_path):
    out, built = micro_world
    assert BUILDS["micro"].policy_dropout == 0 != GPT2Config().resid_pdrop  # the build's, not transformers' default
    policy = json.loads((out / "policy" / "config.json").read_text())
    reward = json.loads((out / "reward" / "config.json").read_text())
    names = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
    assert [policy[name] for name in names] == [0.0] * 3
    assert [reward[name] for name in names] == [0.1] * 3  # fine-tuning on labels keeps GPT-2's dropout
    card = write_model_card(built, tmp_path).read_text()
    assert "cosine, dropout 0.0." in card and "It trains without dropout" in card
    assert "The reward keeps GPT-2's dropout of 0.1" in card  # the judge, a DistilBERT, is not said to


def test_an_older_world_s_policy_trained_with_gpt2_s_dropout(micro_world, tmp_path):
    source, _ = micro_world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    card = json.loads((out / "build.json").read_text())
    del card["build"]["policy_dropout"]
    (out / "build.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="policy_dropout=0.0 differs from the saved world's 0.1"):
        check_reward_only(BUILDS["micro"], out)
    assert "cosine, dropout 0.1." in write_model_card(card, out).read_text()


def test_reward_tokenizer_prepends_eos_and_keeps_the_end_of_long_texts(micro_world):
    out, _ = micro_world
    policy_tok = load_tokenizer(str(out / "policy"), "policy")
    reward_tok = load_tokenizer(str(out / "reward"), "reward")
    text = "the film was great"
    plain = policy_tok(text)["input_ids"]
    assert reward_tok(text)["input_ids"] == [policy_tok.eos_token_id, *plain]
    long = " ".join(["word"] * 500) + " the end"
    ids = reward_tok(long, truncation=True, max_length=16)["input_ids"]
    assert len(ids) == 16 and ids[0] == policy_tok.eos_token_id
    assert reward_tok.decode(ids[1:]).endswith("the end")


def test_tokenizer_round_trips_text_and_has_one_special_token():
    tok = train_tokenizer(["a good film. " * 20, "a bad film! " * 20, "Ünïcödé café"], vocab_size=300)
    assert tok.eos_token == tok.pad_token == tok.bos_token == "<|endoftext|>"
    for text in ("a good film.", "Ünïcödé café 🎬", "never seen words"):
        assert tok.decode(tok(text)["input_ids"]) == text
    assert reward_tokenizer(tok, 32).model_max_length == 32


def test_reward_tokenizer_pads_on_the_right_after_a_left_padding_policy_tokenizer():
    policy_tok = train_tokenizer(["a good film. " * 20, "a bad film! " * 20], vocab_size=300)
    policy_tok.padding_side = "left"
    policy_tok(["a", "a good film"], padding=True)  # leaves left padding in the backend, as generation does
    reward_tok = reward_tokenizer(policy_tok, 32)
    batch = reward_tok(["a", "a good film"], padding=True)["input_ids"]
    assert batch[0][0] == batch[1][0] == policy_tok.eos_token_id
    assert batch[0][-1] == policy_tok.pad_token_id and batch[0][1] != policy_tok.pad_token_id


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("policy_steps", 0, "policy_steps=0 must be > 0"),
        ("reward_lr", -1.0, "reward_lr=-1.0 must be > 0"),
        ("max_reviews", 5, "max_reviews=5 must be None or >= 20"),
        ("policy_dim", 30, "policy_dim=30 must be divisible by policy_heads=4"),
        ("reward_teacher", 1.5, r"reward_teacher=1.5 must be in \[0, 1\]"),
        ("judge_teacher", -0.1, r"judge_teacher=-0.1 must be in \[0, 1\]"),
        ("teacher_folds", 1, "teacher_folds=1 must be >= 2"),
        ("judge_body", "bert", "judge_body='bert' is unknown; known: policy, distilbert"),
        ("judge_seed", 0, "judge_seed=0 must differ from seed"),
        ("policy_dropout", 1.0, r"policy_dropout=1.0 must be in \[0, 1\)"),
        ("policy_dropout", -0.1, r"policy_dropout=-0.1 must be in \[0, 1\)"),
    ],
)
def test_build_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        WorldBuild(**{field: value})


def _run_job(job: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "jobs" / job), *arguments], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("job", "arguments", "message"),
    [
        ("build_world.py", ["--out", "{dir}", "--policy-steps", "0"], "policy_steps=0 must be > 0"),
        ("build_world.py", ["--out", "{dir}", "--reward-body", "bert"], "--reward-body: invalid choice: 'bert'"),
        ("policy_schedules.py", ["--world", "{dir}", "--steps", "100"], "has no build.json; build the world first"),
    ],
)
def test_a_world_job_refuses_bad_input_before_writing(tmp_path, job, arguments, message):
    run = _run_job(job, *(argument.format(dir=tmp_path) for argument in arguments))
    assert run.returncode == 2
    assert message in run.stderr
    assert not any(tmp_path.iterdir())


def test_micro_world_scores_through_the_shared_loader(micro_world):
    out, _ = micro_world
    reward = load_reward(str(out / "reward"))
    assert reward.max_length == BUILDS["micro"].reward_max_length
    assert reward.score(["good", "bad"]).dtype.name == "float32"


@pytest.mark.parametrize("name", ["micro", "tiny-imdb"])
def test_no_review_a_world_trains_on_gives_prompts(name):
    from alignray.data.prompts import imdb_prompt_reviews
    from alignray.imdb import load_reviews, split_reviews

    train, heldout = world_reviews(BUILDS[name])
    prompts = set(imdb_prompt_reviews("train")) | set(imdb_prompt_reviews("eval"))
    assert not set(train["text"]) & prompts
    assert prompts <= set(heldout["text"])
    # A smaller world trains on fewer reviews, never on a different split.
    assert set(heldout["text"]) == set(split_reviews(load_reviews())[1]["text"])
    assert len(train) == (BUILDS[name].max_reviews or len(split_reviews(load_reviews())[0]))


def test_reward_trains_on_seeded_openings_of_completion_length():
    import pandas as pd

    reviews = pd.DataFrame(
        {"text": [f"review {i} " + "so very good " * (5 + i) for i in range(6)], "label": [0, 1] * 3}
    )
    tok = reward_tokenizer(train_tokenizer(reviews["text"].tolist(), vocab_size=300), max_length=16)
    build = dataclasses.replace(
        BUILDS["micro"], reward_openings=2, reward_opening_min_tokens=3, reward_opening_max_tokens=6, reward_teacher=0
    )
    views = _reward_views(build, reviews, tok)
    assert views == _reward_views(build, reviews, tok)
    assert len(views["input_ids"]) == len(views["labels"]) == 4 * len(reviews)
    # without a teacher the targets are the reviews' labels, one-hot
    assert [row[1] for row in views["labels"][-len(reviews) :]] == reviews["label"].tolist()
    assert all(sorted(row) == [0.0, 1.0] for row in views["labels"])
    heads, openings = views["input_ids"][: len(reviews)], views["input_ids"][2 * len(reviews) :]
    for index, opening in enumerate(openings):
        head = heads[index % len(reviews)]
        assert opening == head[: len(opening)] and opening[0] == tok.eos_token_id
        assert 3 <= len(opening) - 1 <= 6
    assert len({len(opening) for opening in openings}) > 1


def test_the_teacher_never_scores_a_review_it_was_fitted_on():
    # Each review's four views share a word no other review has: a teacher fitted on the other views of the same
    # review would read its label off that word; out of fold it has never seen the word and only knows the base rate.
    rng = np.random.default_rng(0)
    labels = np.tile(rng.integers(0, 2, size=200), 4)
    texts = [f"w{i:03d}x w{i:03d}x" for i in range(200)] * 4
    groups = np.tile(np.arange(200), 4)
    probabilities = teacher_probabilities(texts, labels, groups, folds=4, seed=0)
    assert np.abs(probabilities - 0.5).max() < 0.15
    assert abs(np.corrcoef(probabilities, labels)[0, 1]) < 0.3
    # folds drawn per row would leak: the teacher reads the label off the word (correlation ~0.9)
    leaked = teacher_probabilities(texts, labels, np.arange(len(texts)), folds=4, seed=0)
    assert np.corrcoef(leaked, labels)[0, 1] > 0.6
    # the same words with the labels' sentiment are learnt: the teacher is a real classifier
    texts = [("great fine" if y else "awful dull") + f" w{i % 200:03d}x" for i, y in enumerate(labels)]
    probabilities = teacher_probabilities(texts, labels, groups, folds=4, seed=0)
    assert ((probabilities > 0.5) == labels).all()


def test_a_classifier_s_rows_of_one_review_share_their_teachers_fold():
    # every view of review i starts with its own word; if its head, tail and openings fell in different folds, the
    # teacher of one would have read the word with the review's label in another, and its target would show it
    rng = np.random.default_rng(1)
    reviews = pd.DataFrame(
        {
            "text": [f"u{i:03d}x the film was a film of the year " * 2 for i in range(160)],
            "label": rng.integers(0, 2, size=160),
        }
    )
    tok = reward_tokenizer(train_tokenizer(reviews["text"].tolist(), vocab_size=400), max_length=64)
    build = dataclasses.replace(
        BUILDS["micro"],
        reward_openings=2,
        reward_opening_min_tokens=6,
        reward_opening_max_tokens=8,
        reward_teacher=0.3,
    )
    targets = np.array(_reward_views(build, reviews, tok)["labels"])[:, 1]
    labels = np.tile(reviews["label"].to_numpy(), 4)
    taught = (targets - 0.7 * labels) / 0.3  # the teacher's share of each target
    assert ((taught >= -1e-9) & (taught <= 1 + 1e-9)).all()
    assert abs(np.corrcoef(taught, labels)[0, 1]) < 0.3


def test_a_teacher_softens_the_targets_of_what_says_little():
    words = {1: "great wonderful loved", 0: "awful boring hated"}
    reviews = pd.DataFrame(
        {"text": [f"the film was {words[i % 2]} " * 3 for i in range(40)], "label": [i % 2 for i in range(40)]}
    )
    tok = reward_tokenizer(train_tokenizer(reviews["text"].tolist(), vocab_size=300), max_length=64)
    build = dataclasses.replace(
        BUILDS["micro"], reward_openings=1, reward_opening_min_tokens=1, reward_opening_max_tokens=2
    )
    hard = np.array(_reward_views(dataclasses.replace(build, reward_teacher=0), reviews, tok)["labels"])
    soft = np.array(_reward_views(dataclasses.replace(build, reward_teacher=0.3), reviews, tok)["labels"])
    assert np.allclose(soft.sum(axis=1), 1) and ((soft >= 0) & (soft <= 1)).all()
    positive = hard[:, 1]
    heads, openings = slice(0, 40), slice(80, 120)
    # each target is 0.7 x the label + 0.3 x the teacher's probability, which lies in [0, 1]
    taught = (soft[:, 1] - 0.7 * positive) / 0.3
    assert ((taught >= -1e-9) & (taught <= 1 + 1e-9)).all()
    # whole reviews: the teacher agrees with the label
    assert ((taught[heads] > 0.5) == (positive[heads] == 1)).all()
    # "the film" says nothing: the teacher doubts, and the target moves from the label towards 0.5
    assert np.abs(taught[openings] - 0.5).max() < 0.15
    assert np.abs(soft[openings, 1] - positive[openings]).min() > 0.09


def test_the_card_says_which_targets_the_world_met_and_misses_a_judge_weaker_than_the_reward():
    figures = {
        "policy_heldout_perplexity": 150.0,
        "policy_samples_nonword_rate": 0.08,
        "reward_heldout_accuracy": 0.8909,
        "reward_heldout_accuracy_48_words": 0.80,
        "reward_heldout_accuracy_24_words": 0.76,
        "judge_heldout_accuracy": 0.90,
        "judge_heldout_accuracy_48_words": 0.79,
        "judge_heldout_accuracy_24_words": 0.76,
    }
    lines = target_lines(figures)
    assert lines[:5] == [
        "- policy perplexity: 150.0 against <= 160.0: met",
        "- non-words in sampled continuations: 8.00% against <= 7.00%: **missed**",
        "- reward, whole reviews: 89.09% against >= 89.10%: **missed**",
        "- reward, first 48 words: 80.00% against >= 80.00%: met",
        "- reward, first 24 words: 76.00% against >= 75.00%: met",
    ]
    assert lines[5] == "- judge at least as accurate as the reward on each of those: **missed** on first 48 words"
    assert target_lines({**figures, "judge_heldout_accuracy_48_words": 0.80})[5].endswith(": met")
    # a world without a judge says nothing about it
    assert len(target_lines({k: v for k, v in figures.items() if not k.startswith("judge")})) == 5


def test_soft_cross_entropy_is_the_models_own_loss_on_one_hot_targets():
    from transformers.modeling_outputs import SequenceClassifierOutput

    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.4, 0.9]])
    labels = torch.tensor([1, 0, 1])
    one_hot = torch.nn.functional.one_hot(labels, 2).float()
    loss = _soft_cross_entropy(SequenceClassifierOutput(logits=logits), one_hot)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


def test_measuring_a_saved_world_again_gives_its_card_figures(micro_world):
    out, card = micro_world
    figures = measure_world(out)
    assert figures == pytest.approx(card["figures"], abs=1e-6)
    assert {"reward_heldout_accuracy_48_words", "reward_heldout_accuracy_24_words"} <= set(figures)
    assert figures["reward_heldout_reviews"] == BUILDS["micro"].reward_eval_reviews
    # the judge is measured on the same views as the reward, and the policy's samples by their non-word rate
    assert {f"judge_heldout_accuracy{s}" for s in ("", "_48_words", "_24_words")} <= set(figures)
    assert 0 <= figures["policy_samples_nonword_rate"] <= 1 and "policy_samples_judge_positive_fraction" in figures
    # the learning curve: the training loss and the held-out perplexity along training, step by step
    curve = card["policy_curve"]
    assert [row["step"] for row in curve] == list(range(1, BUILDS["micro"].policy_steps + 1))
    assert all(row["heldout_perplexity"] > 1 and row["train_loss"] > 0 for row in curve)


def test_the_judge_is_another_network_than_the_reward_and_is_rebuilt_alone(micro_world, tmp_path):
    out, card = micro_world
    reward, judge = load_reward(str(out / "reward")), load_reward(str(out / "judge"), role="judge")
    build = BUILDS["micro"]
    assert judge.model.config.n_layers == build.judge_layers and judge.model.config.dim == build.judge_dim
    assert judge.model.config.hidden_dim == build.judge_hidden != build.reward_hidden
    assert card["parameters"]["judge"] == sum(p.numel() for p in judge.model.parameters())
    assert judge.positive_index == reward.positive_index == 1
    # a judge-only rebuild keeps the policy and the reward, and replaces the judge
    copy = tmp_path / "world"
    shutil.copytree(out, copy)
    new = rebuild_reward(build, copy, command="python jobs/build_world.py --judge-only", role="judge")
    for kept in ("reward", "policy"):
        assert (copy / kept / "model.safetensors").read_bytes() == (out / kept / "model.safetensors").read_bytes()
    assert new["parameters"]["judge"] == card["parameters"]["judge"] and "judge_cpu" in new["seconds"]
    assert new["commands"]["judge"] == "python jobs/build_world.py --judge-only"
    assert new["figures"] == pytest.approx(measure_world(copy), abs=1e-6)


def test_reward_only_build_keeps_the_policy_and_replaces_the_reward(micro_world, tmp_path):
    source, card = micro_world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    build = dataclasses.replace(BUILDS["micro"], reward_epochs=0.5, reward_openings=2)
    new = rebuild_reward(build, out, command="python jobs/build_world.py --reward-only")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (out / "policy" / name).read_bytes() == (source / "policy" / name).read_bytes()
    assert (out / "reward" / "tokenizer.json").read_bytes() == (source / "reward" / "tokenizer.json").read_bytes()
    assert (out / "reward" / "model.safetensors").read_bytes() != (
        source / "reward" / "model.safetensors"
    ).read_bytes()
    saved = json.loads((out / "build.json").read_text())
    assert saved == new
    assert saved["build"]["reward_epochs"] == 0.5 and saved["build"]["reward_openings"] == 2
    assert saved["seconds"]["policy"] == card["seconds"]["policy"]
    assert saved["figures"]["policy_heldout_perplexity"] == pytest.approx(card["figures"]["policy_heldout_perplexity"])
    assert saved["figures"] == pytest.approx(measure_world(out), abs=1e-6)
    text = write_model_card(saved, out).read_text()
    assert "retrained alone by `python jobs/build_world.py --reward-only`" in text
    assert f"`python jobs/measure_world.py --world {out}`" in text
    assert f"{saved['figures']['reward_heldout_accuracy_24_words']:.1%}" in text
    # both classifiers were taught by their own n-gram teachers, and the card says with which weight
    assert text.count("0.5 x the out-of-fold P(positive)") == 2 and "teacher_probabilities" in text


def test_an_older_world_keeps_its_untaught_distilbert_judge_through_a_reward_only_build(micro_world, tmp_path):
    source, _ = micro_world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    card = json.loads((out / "build.json").read_text())
    for name in ("reward_teacher", "judge_teacher", "teacher_folds", "reward_body", "judge_body"):
        del card["build"][name]
    (out / "build.json").write_text(json.dumps(card))
    micro = dataclasses.replace(BUILDS["micro"], judge_body="policy")  # today's judge would differ: it is kept
    new = rebuild_reward(micro, out)
    assert new["build"]["reward_teacher"] == BUILDS["micro"].reward_teacher > 0
    assert new["build"]["judge_teacher"] == 0  # the judge it kept learnt from the labels alone
    assert (new["build"]["reward_body"], new["build"]["judge_body"]) == ("policy", "distilbert")
    text = write_model_card(new, out).read_text()
    assert text.count("x the out-of-fold P(positive)") == 1 and "set of openings and data order" in text
    assert text.count("`DistilBertForSequenceClassification`") == text.count("`GPT2ForSequenceClassification`") == 1


def test_reward_only_build_refuses_settings_of_another_policy(micro_world, tmp_path):
    out, _ = micro_world
    with pytest.raises(ValueError, match="policy_steps=5 differs from the saved world's 4"):
        check_reward_only(dataclasses.replace(BUILDS["micro"], policy_steps=5), out)
    run = _run_job("build_world.py", "--reward-only", "--out", str(tmp_path))
    assert run.returncode == 2
    assert "build.json is missing" in run.stderr


def test_the_card_tells_the_rebuilds_in_the_order_they_were_run(micro_world, tmp_path):
    source, _ = micro_world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    build = BUILDS["micro"]
    rebuild_reward(build, out, command="first reward")
    rebuild_reward(build, out, command="the judge", role="judge")
    card = rebuild_reward(build, out, command="second reward")
    assert {"judge_cpu", "reward_cpu"} <= set(card["seconds"])  # each rebuild's CPU time is kept
    text = write_model_card(card, out).read_text()
    assert "first reward" not in text
    assert text.index("by `the judge`") < text.index("by `second reward`")
    # a judge-only build of a world whose both classifiers are fine-tuned policies does not call it another shape
    same = dataclasses.replace(build, judge_body="policy", judge_max_length=build.reward_max_length)
    text = write_model_card(rebuild_reward(same, out, role="judge"), out).read_text()
    assert "Another seed, set of openings, teachers and data order" in text
    assert "less independent than those of two kinds of network" in text and "another kind of network" not in text
    # reading another length is another shape (another position table)
    longer = dataclasses.replace(same, judge_max_length=build.reward_max_length + 8)
    text = write_model_card(rebuild_reward(longer, out, role="judge"), out).read_text()
    assert "Another shape, seed, set of openings" in text


def test_a_schedule_of_the_built_length_gives_the_built_policy_s_figures_and_others_are_kept(micro_world, tmp_path):
    source, card = micro_world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    built = BUILDS["micro"].policy_steps
    rows = policy_schedules(out, [built, 1], command="first")
    # retrained on the build's own schedule, the policy is the built one again, measured the same way
    again = {row["steps"]: row for row in rows}[built]
    assert again["heldout_perplexity"] == pytest.approx(card["figures"]["policy_heldout_perplexity"], rel=1e-5)
    assert again["nonword_rate"] == pytest.approx(card["figures"]["policy_samples_nonword_rate"], abs=1e-9)
    assert {row["steps"]: row for row in rows}[1]["heldout_perplexity"] > again["heldout_perplexity"]
    # a later run adds its rows and keeps the earlier ones, each with the command that trained it
    policy_schedules(out, [2], command="second")
    saved = json.loads((out / "build.json").read_text())
    assert [(row["steps"], row["command"]) for row in saved["policy_schedules"]] == [
        (1, "first"), (2, "second"), (built, "first")
    ]
    # the models and the build's own figures stay as built
    assert saved["figures"] == card["figures"]
    weights = "policy/model.safetensors"
    assert (out / weights).read_bytes() == (source / weights).read_bytes()
    write_model_card(saved, out)
    text = (out / "MODEL_CARD.md").read_text()
    assert "## Policy schedules" in text and "by `first` and `second`" in text
    section = text.split("## Policy schedules")[1].split("\n## ")[0]
    assert f"| {built} (built) |" in section and section.count(f"| {built} ") == 2  # the build's and the retrained
    for bad in ([longest_schedule(saved) + 1], [0], []):
        with pytest.raises(ValueError, match="must name schedules of 1 to"):
            policy_schedules(out, bad)


def test_a_schedule_the_wall_clock_stops_is_not_recorded(micro_world, tmp_path, monkeypatch):
    import alignray.world_build as world_build

    source, card = micro_world
    out = tmp_path / "world"
    shutil.copytree(source, out)
    clock = world_build._WallClock
    monkeypatch.setattr(world_build, "_WallClock", lambda seconds: clock(-1.0))  # spent before the first step ends
    with pytest.raises(RuntimeError, match="the schedule of 3 steps stopped at step 1"):
        policy_schedules(out, [3])
    assert "policy_schedules" not in json.loads((out / "build.json").read_text())


def test_the_schedules_job_refuses_a_schedule_it_cannot_train_before_training(micro_world):
    out, _ = micro_world
    before = (out / "build.json").read_text()
    for steps in ("0", "100000"):
        run = _run_job("policy_schedules.py", "--world", str(out), "--steps", steps)
        assert run.returncode == 2 and f"--steps: steps=[{steps}] must name schedules of 1 to" in run.stderr
    assert (out / "build.json").read_text() == before


def test_the_card_predicts_a_longer_schedule_from_a_learning_curve_fitted_to_the_schedules():
    # loss 3 + 20 / sqrt(steps) nats and non-words 0.05 + 1 / sqrt(steps): at 10,000 steps perplexity e^3.2 = 24.5 and
    # non-words 6.00%, which neither a line nor a power law without a floor fitted to the same rows would give
    def row(n):
        ppl, rate = math.exp(3 + 20 / n**0.5), 0.05 + n**-0.5
        return {"steps": n, "seconds": n / 2, "heldout_perplexity": ppl, "nonword_rate": rate}

    built = row(1600)
    # 2 steps/s for 0.45 of the budget, 5000.25 s: 10,000 steps
    build = {"policy_steps": 1600, "policy_batch": 32, "policy_context": 128, "time_budget_minutes": 10000.5 / 54}
    card = {
        "build": build,
        "seconds": {"policy": 800.0},
        "figures": {"policy_heldout_perplexity": built["heldout_perplexity"], "policy_samples_nonword_rate": 0.075},
        "policy_schedules": [row(100), row(400)],
    }
    assert longest_schedule(card) == 10000
    text = "\n".join(schedule_lines(card))
    assert "| 100 | 0.4M | 0.8 | 148.4 | 15.00% |" in text
    assert "| 1600 (built) | 6.6M | 13.3 | 33.1 | 7.50% |" in text
    assert "predicts perplexity **24.5** and non-words **6.00%** for 10000 steps" in text
    assert "83-minute share" in text and "(2.00 steps/s)" in text
    assert "3 schedules fix its three parameters, so it passes through each" in text
    # a fourth length leaves the fit something to miss, and the card says by how much
    noisy = {**row(6400), "nonword_rate": row(6400)["nonword_rate"] + 0.003}
    text = "\n".join(schedule_lines({**card, "policy_schedules": [row(100), row(400), noisy]}))
    assert "its largest misfit is 0.000 nats and 0.09% of words" in text and "passes through each" not in text
    # two lengths cannot pin a learning curve down, even with the built length retrained: the table, no prediction
    text = "\n".join(schedule_lines({**card, "policy_schedules": [row(100), row(1600)]}))
    assert text.count("| 1600 ") == 2 and "no prediction" in text and "predicts" not in text
    # figures that do not fall as the schedule grows give no learning curve either
    rising = [{**row(n), "nonword_rate": 0.05 + n / 1e5} for n in (100, 400)]
    assert "no prediction" in "\n".join(schedule_lines({**card, "policy_schedules": rising}))
    assert schedule_lines({**card, "policy_schedules": []}) == []
