import json

import numpy as np
import pytest
import torch

from alignray import world
from alignray.world import ASSETS, WorldError, load_policy, load_reward, pick_device, resolve_model

TINY = ASSETS / "tiny-imdb"


def test_missing_local_model_says_how_to_build_it(tmp_path):
    with pytest.raises(WorldError, match="has no config.json: point to a save_pretrained directory"):
        resolve_model(str(tmp_path), "policy")
    with pytest.raises(WorldError, match="make world"):
        resolve_model(str(tmp_path / "tiny-imdb" / "policy"), "policy")


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="role='critic'"):
        resolve_model("tiny-imdb", "critic")


def test_hub_id_offline_fails_at_once_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorldError, match="Cannot fetch hub model 'lvwerra/gpt2-imdb': HF_HUB_OFFLINE"):
        resolve_model("lvwerra-imdb", "policy")


class _Connection:
    def close(self) -> None:
        pass


def test_the_hub_is_probed_once_and_its_answer_decides(monkeypatch):
    """Unreachable: a clear error naming the host; reachable: the hub id goes on to from_pretrained unchanged."""
    calls = []

    def refuse(address, timeout):
        calls.append((address, timeout))
        raise OSError("no route")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(world.socket, "create_connection", refuse)
    with pytest.raises(WorldError, match="huggingface.co is unreachable \\(OSError\\)"):
        resolve_model("lvwerra/distilbert-imdb", "reward")
    assert calls == [(("huggingface.co", 443), 3)]
    monkeypatch.setattr(world.socket, "create_connection", lambda address, timeout: _Connection())
    assert resolve_model("lvwerra-imdb", "reward") == "lvwerra/distilbert-imdb"


def test_pick_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_reward_is_the_positive_logit_wherever_label2id_puts_it(micro_world):
    out, _ = micro_world
    reward = load_reward(str(out / "reward"))
    texts = ["a fine film", "dull and long", "x"]
    logits = reward.logits(texts)
    assert logits.shape == (3, 2)
    np.testing.assert_allclose(reward.score(texts), logits[:, 1])
    reward.model.config.label2id = {"POSITIVE": 0, "NEGATIVE": 1}
    np.testing.assert_allclose(reward.score(texts), logits[:, 0])
    np.testing.assert_array_equal(reward.is_positive(texts), logits.argmax(1) == 0)
    reward.model.config.label2id = {"LABEL_0": 0, "LABEL_1": 1}
    with pytest.raises(WorldError, match="no POSITIVE label"):
        reward.score(texts)


def test_reward_scores_in_batches_like_one_batch(micro_world):
    out, _ = micro_world
    reward = load_reward(str(out / "reward"))
    texts = [f"review number {i} " * (i % 5 + 1) for i in range(11)]
    np.testing.assert_allclose(reward.score(texts, batch_size=3), reward.score(texts, batch_size=64), atol=1e-5)
    assert reward.score([]).shape == (0,)


def test_policy_loads_left_padded_with_a_pad_token(micro_world):
    out, _ = micro_world
    model, tokenizer = load_policy(str(out / "policy"))
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == model.generation_config.pad_token_id
    assert not model.training


def test_policy_goes_to_the_device_and_dtype_asked_for(micro_world):
    out, _ = micro_world
    model, _ = load_policy(str(out / "policy"), device="meta", dtype=torch.float64)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.float64}


def test_pick_device_takes_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")
    assert pick_device("cpu") == torch.device("cpu")


def test_committed_world_is_small_safetensors_only_and_meets_its_card():
    files = [p for p in TINY.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    for role in ("policy", "reward", "judge"):
        assert (TINY / role / "model.safetensors").is_file()
    figures = json.loads((TINY / "build.json").read_text())["figures"]
    assert figures["reward_heldout_accuracy"] >= 0.89
    # Sweeps score ~35-word completions: the committed reward judges review openings of that length too (the policy
    # fine-tuned with an n-gram teacher; a DistilBERT on the labels alone read them at 77.6% and 73.0%; rebuilt on a
    # better policy it read 48 words at 78.4% where the one before read 78.9%, within the 0.6-0.9 points a seed moves).
    assert figures["reward_heldout_accuracy_48_words"] >= 0.78
    assert figures["reward_heldout_accuracy_24_words"] >= 0.745
    # the judge reads them about as well: within 1.5 points (2490 reviews give each accuracy a standard error of
    # ~0.8-0.9, and the reward's own recipe with another seed read 0.6-0.9 points less)
    for key in ("", "_48_words", "_24_words"):
        assert figures[f"judge_heldout_accuracy{key}"] >= figures[f"reward_heldout_accuracy{key}"] - 0.015, key
    # a policy that writes words: the first world's was 231.8 and ~11% non-words
    assert figures["policy_heldout_perplexity"] <= 160 and figures["policy_samples_nonword_rate"] <= 0.08
    assert 0.3 <= figures["policy_samples_positive_fraction"] <= 0.7
    card = (TINY / "MODEL_CARD.md").read_text()
    for key in ("reward_heldout_accuracy", "reward_heldout_accuracy_48_words", "reward_heldout_accuracy_24_words",
                "judge_heldout_accuracy", "policy_samples_nonword_rate"):
        assert f"{figures[key]:.1%}" in card
    assert "`python jobs/measure_world.py --world alignray/assets/tiny-imdb`" in card


def test_committed_reward_tells_praise_from_panning():
    reward = load_reward("tiny-imdb")
    praise = ["This movie was wonderful. Brilliant acting, a great story, I loved every minute. 10/10."]
    panning = ["This movie was awful. Terrible acting, a boring story, a complete waste of time. 1/10."]
    assert reward.score(praise)[0] > reward.score(panning)[0] + 1.0


def test_committed_policy_writes_text(monkeypatch):
    from alignray.data.generation import sample_continuations

    model, tokenizer = load_policy("tiny-imdb")
    texts = sample_continuations(model, tokenizer, ["This movie", "I"], max_new_tokens=12, seed=0)
    assert len(texts) == 2 and all(len(t.split()) >= 3 for t in texts)


def test_an_owner_less_hub_id_is_treated_as_a_hub_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorldError, match="Cannot fetch hub model 'gpt2'"):
        resolve_model("gpt2", "policy")
    with pytest.raises(WorldError, match="has no config.json"):
        resolve_model("runs/some/model", "policy")
