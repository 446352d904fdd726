import math

import numpy as np
import pandas as pd
import pytest
import torch

from alignray.metrics import (
    METRICS,
    distinct_n,
    evaluate,
    metrics_from_samples,
    nonword_rate,
    text_nonword_rate,
    token_entropy,
    word_entropy,
)

VOCABULARY = frozenset({"the", "film", "was", "good", "i", "liked", "it", "don't", "a", "story", "bad", "end"})


def test_token_entropy_by_hand():
    # tokens 1,1,2,3 -> p = 1/2, 1/4, 1/4
    assert token_entropy([[1, 1], [2, 3]]) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert token_entropy([[7, 7, 7]]) == 0.0
    assert token_entropy([[], []]) == 0.0


def test_distinct_n_by_hand():
    seqs = [[1, 2, 1, 2], [1, 2]]
    assert distinct_n(seqs, 1) == pytest.approx(2 / 6)
    assert distinct_n(seqs, 2) == pytest.approx(2 / 4)  # (1,2),(2,1),(1,2) and (1,2): never across sequences
    assert distinct_n([[5]], 2) == 0.0


def test_metrics_from_samples_by_hand():
    samples = pd.DataFrame(
        {
            "reward": [1.0, -1.0, 3.0, 0.0],
            "positive": [True, False, True, False],
            "completion_ids": [[1, 2], [2], [3, 3], [1]],
            "logp": [-2.0, -1.0, -3.0, -1.0],
            "ref_logp": [-3.0, -1.5, -2.0, -2.5],
            "entropy": [2.0, 1.0, 1.5, 0.5],
            "tokens": [2, 1, 2, 1],
            "completion": ["The film", " was GOOD", "zzqx zzqx", " film!"],
        }
    )
    m = metrics_from_samples(samples, VOCABULARY)
    assert set(m) == set(METRICS)
    # a judge's columns add its two metrics, and nothing else changes
    judged = metrics_from_samples(samples.assign(judge=[0.5, -0.5, 2.0, 1.0], judge_positive=[1, 0, 1, 1]),
                                  VOCABULARY)  # fmt: skip
    assert judged["judge/mean"] == pytest.approx(0.75) and judged["judge/frac_positive"] == pytest.approx(0.75)
    assert {k: v for k, v in judged.items() if not k.startswith("judge/")} == m
    assert m["reward/mean"] == pytest.approx(0.75)
    assert m["reward/std"] == pytest.approx(np.std([1.0, -1.0, 3.0, 0.0]))
    assert m["reward/p50"] == pytest.approx(0.5)
    assert m["reward/frac_positive"] == 0.5
    assert m["kl/ref"] == pytest.approx(np.mean([1.0, 0.5, -1.0, 1.5]))
    assert m["fluency/ref_perplexity"] == pytest.approx(math.exp(9.0 / 6))
    assert m["diversity/predictive_entropy"] == pytest.approx(5.0 / 6)
    assert m["diversity/distinct_1"] == pytest.approx(3 / 6)
    assert m["diversity/token_entropy"] == pytest.approx(token_entropy([[1, 2], [2], [3, 3], [1]]))
    assert m["fluency/nonword_rate"] == pytest.approx(2 / 7)  # the film was good zzqx zzqx film
    # the, was, good once and film twice: p = 1/5, 1/5, 1/5, 2/5
    assert m["diversity/word_entropy"] == pytest.approx(-(3 * 0.2 * math.log(0.2) + 0.4 * math.log(0.4)))


def test_a_text_of_real_words_has_no_nonwords():
    text = "The film was good: I liked it, don't... a GOOD story (the end)"
    assert text_nonword_rate(text, VOCABULARY) == 0.0 and nonword_rate([text, "bad!"], VOCABULARY) == 0.0
    assert text_nonword_rate("", VOCABULARY) == 0.0 and nonword_rate(["", "42 /10"], VOCABULARY) == 0.0


def test_planted_nonwords_raise_the_nonword_rate_by_their_share():
    texts = ["the film was good i liked it", "a bad story the end"]  # 12 words
    assert nonword_rate(texts, VOCABULARY) == 0.0
    planted = ["the film was good etoopelroemilutch i liked it marnardyty", "a bad story fash110102 the end"]
    assert nonword_rate(planted, VOCABULARY) == pytest.approx(3 / 15)  # pooled over words, not over texts
    assert [text_nonword_rate(t, VOCABULARY) for t in planted] == pytest.approx([2 / 9, 1 / 6])


def test_word_entropy_ignores_nonwords_and_rises_with_new_real_words():
    texts = ["the film was good", "the film was bad"]
    before = word_entropy(texts, VOCABULARY)
    assert before == pytest.approx(-(3 * 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125)))
    assert word_entropy([t + " zzqx qqxz xyzzy hairmanowerone's" for t in texts], VOCABULARY) == before
    assert word_entropy([*texts, "i liked it"], VOCABULARY) > before
    assert word_entropy(["zzqx"], VOCABULARY) == 0.0 and word_entropy([], VOCABULARY) == 0.0


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield
    ray.shutdown()


@torch.no_grad()
def _rescore(model, tokenizer, samples: pd.DataFrame) -> np.ndarray:
    """log π(y|x) of each sample by a plain forward pass over prompt + completion (+ the eos it ended with), one
    unpadded sequence at a time: independent of generate, padding and position ids."""
    out = []
    for prompt, ids, tokens in zip(samples["prompt"], samples["completion_ids"], samples["tokens"], strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion = list(ids) + [tokenizer.eos_token_id] * (int(tokens) - len(ids))
        sequence = torch.tensor([prompt_ids + completion])
        log_probs = model(sequence).logits[0, len(prompt_ids) - 1 : -1].float().log_softmax(-1)
        out.append(log_probs.gather(-1, torch.tensor(completion)[:, None]).sum().item())
    return np.asarray(out)


def test_evaluate_a_policy_against_itself(micro_world, ray_cluster):
    from alignray.data.pipeline import run_stages
    from alignray.world import load_policy, load_reward

    out, _ = micro_world
    policy, reward = str(out / "policy"), str(out / "reward")
    prompts = ["the film", "I", "a long story about", "this"] * 3
    m = evaluate(policy, policy, reward, prompts, max_new_tokens=6, batch_size=4)
    samples = run_stages(prompts, policy, reward, 1, 6, 0, reference=policy, batch_size=4)
    assert (
        m == metrics_from_samples(samples) == evaluate(policy, policy, reward, prompts, max_new_tokens=6, batch_size=4)
    )
    assert set(m) == set(METRICS)
    assert m["kl/ref"] == pytest.approx(0.0, abs=1e-4)  # log π − log π_ref of π's own samples, with π = π_ref
    model, tokenizer = load_policy(policy)
    logp = _rescore(model, tokenizer, samples)
    np.testing.assert_allclose(samples["logp"], logp, atol=1e-4)
    assert m["fluency/ref_perplexity"] == pytest.approx(math.exp(-logp.sum() / samples["tokens"].sum()), rel=1e-4)
    texts = (samples["prompt"] + samples["completion"]).tolist()
    assert m["reward/frac_positive"] == pytest.approx(load_reward(reward).is_positive(texts).mean())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """tiny-imdb's policy with every weight moved by noise: a reference at a KL of about one nat per token."""
    from alignray.world import load_policy

    model, tokenizer = load_policy("tiny-imdb")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.03 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path_factory.mktemp("reference")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


PROMPTS = ["the film", "I", "a long story about", "this movie was"]


def test_kl_to_another_reference_matches_the_exact_kl_within_its_standard_error(reference, ray_cluster):
    """One new token: KL(π‖π_ref) is the mean over prompts of the KL of two next-token distributions, exactly."""
    from alignray.data.pipeline import run_stages
    from alignray.world import load_policy

    policy, tokenizer = load_policy("tiny-imdb")
    ref_model, _ = load_policy(reference)
    with torch.no_grad():
        exact = []
        for prompt in PROMPTS:
            ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            p, q = (m(ids).logits[0, -1].double().log_softmax(-1) for m in (policy, ref_model))
            exact.append((p.exp() * (p - q)).sum().item())
    samples = run_stages(PROMPTS, "tiny-imdb", "tiny-imdb", 250, 1, 0, reference=reference, batch_size=125)
    kl = metrics_from_samples(samples)["kl/ref"]
    log_ratios = samples["logp"] - samples["ref_logp"]
    standard_error = log_ratios.std() / math.sqrt(len(samples))
    assert np.mean(exact) > 10 * standard_error  # a reference routed to the policy (KL 0) would fail below
    assert abs(kl - np.mean(exact)) < 4 * standard_error


def test_reference_log_probs_are_the_reference_s_along_each_sample(reference, ray_cluster):
    """Several new tokens: each sample's log π and log π_ref equal a plain forward pass of each model."""
    from alignray.data.pipeline import run_stages
    from alignray.world import load_policy

    samples = run_stages(PROMPTS, "tiny-imdb", "tiny-imdb", 8, 5, 1, reference=reference, batch_size=16)
    policy, tokenizer = load_policy("tiny-imdb")
    np.testing.assert_allclose(samples["logp"], _rescore(policy, tokenizer, samples), atol=1e-3)
    np.testing.assert_allclose(samples["ref_logp"], _rescore(load_policy(reference)[0], tokenizer, samples), atol=1e-3)
    assert (samples["logp"] - samples["ref_logp"]).abs().mean() > 0.5


def test_a_reference_with_another_tokenizer_is_refused_before_sampling(micro_world, monkeypatch):
    from alignray.data import pipeline

    def run_stages(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(pipeline, "run_stages", run_stages)
    out, _ = micro_world
    with pytest.raises(ValueError, match="reference='tiny-imdb' has another tokenizer than policy="):
        evaluate(str(out / "policy"), "tiny-imdb", str(out / "reward"), ["the film"])


def test_evaluate_job_rejects_bad_input_before_ray(capsys):
    from jobs.evaluate import main

    with pytest.raises(SystemExit):
        main(["--num-prompts", "0"])
    assert "num_prompts=0 must be an integer >= 1" in capsys.readouterr().err
