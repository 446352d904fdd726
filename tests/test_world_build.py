import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel

from alignray.world import load_reward, load_tokenizer
from alignray.world_build import BUILDS, WorldBuild, measure, perplexity, reward_tokenizer, train_tokenizer

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
    assert card["split"]["train"] + card["split"]["heldout"] == BUILDS["micro"].max_reviews


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
    reward = json.loads((out / "reward" / "config.json").read_text())
    d, hidden = build.reward_dim, build.reward_hidden
    assert (reward["dim"], reward["n_layers"], reward["hidden_dim"]) == (d, build.reward_layers, hidden)
    layer = 4 * (d * d + d) + 2 * d * hidden + hidden + d + 4 * d
    distilbert = (vocab + build.reward_max_length) * d + 2 * d + build.reward_layers * layer + d * d + d + 2 * d + 2
    assert card["parameters"]["reward"] == distilbert


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


def test_reward_labels_match_lvwerra_distilbert_imdb(micro_world):
    out, _ = micro_world
    config = json.loads((out / "reward" / "config.json").read_text())
    assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert config["architectures"] == ["DistilBertForSequenceClassification"]


def test_reward_embeddings_start_from_the_policy(micro_world):
    out, _ = micro_world
    policy = load_file(out / "policy" / "model.safetensors")
    reward = load_file(out / "reward" / "model.safetensors")
    wte = policy["transformer.wte.weight"]
    words = reward["distilbert.embeddings.word_embeddings.weight"]
    assert wte.shape == words.shape
    # Trained since the copy, so close in bulk but not identical.
    assert not torch.equal(wte, words)
    assert torch.nn.functional.cosine_similarity(wte.flatten(), words.flatten(), dim=0) > 0.5


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


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("policy_steps", 0, "policy_steps=0 must be > 0"),
        ("reward_lr", -1.0, "reward_lr=-1.0 must be > 0"),
        ("max_reviews", 5, "max_reviews=5 must be None or >= 20"),
        ("policy_dim", 30, "policy_dim=30 must be divisible by policy_heads=4"),
    ],
)
def test_build_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        WorldBuild(**{field: value})


def test_build_job_rejects_a_bad_override_before_building(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "build_world.py"), "--out", str(tmp_path), "--policy-steps", "0"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "policy_steps=0 must be > 0" in run.stderr
    assert not any(tmp_path.iterdir())


def test_micro_world_scores_through_the_shared_loader(micro_world):
    out, _ = micro_world
    reward = load_reward(str(out / "reward"))
    assert reward.max_length == BUILDS["micro"].reward_max_length
    assert reward.score(["good", "bad"]).dtype.name == "float32"
