import math

import numpy as np
import pandas as pd
import pytest

from alignray.metrics import METRICS, distinct_n, evaluate, metrics_from_samples, token_entropy


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
        }
    )
    m = metrics_from_samples(samples)
    assert set(m) == set(METRICS)
    assert m["reward/mean"] == pytest.approx(0.75)
    assert m["reward/std"] == pytest.approx(np.std([1.0, -1.0, 3.0, 0.0]))
    assert m["reward/p50"] == pytest.approx(0.5)
    assert m["reward/frac_positive"] == 0.5
    assert m["kl/ref"] == pytest.approx(np.mean([1.0, 0.5, -1.0, 1.5]))
    assert m["fluency/ref_perplexity"] == pytest.approx(math.exp(9.0 / 6))
    assert m["diversity/predictive_entropy"] == pytest.approx(5.0 / 6)
    assert m["diversity/distinct_1"] == pytest.approx(3 / 6)
    assert m["diversity/token_entropy"] == pytest.approx(token_entropy([[1, 2], [2], [3, 3], [1]]))


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield
    ray.shutdown()


def test_evaluate_a_policy_against_itself(micro_world, ray_cluster):
    out, _ = micro_world
    policy = str(out / "policy")
    prompts = ["the film", "I", "a long story about", "this"] * 3
    m = evaluate(policy, policy, str(out / "reward"), prompts, max_new_tokens=6, batch_size=4)
    assert set(m) == set(METRICS)
    assert m["kl/ref"] == pytest.approx(0.0, abs=1e-4)  # log π − log π_ref of π's own samples, with π = π_ref
    assert 1.0 < m["fluency/ref_perplexity"] < 10 * 400  # a 400-token vocabulary, barely trained
    assert 0.0 < m["diversity/predictive_entropy"] <= math.log(400) + 1e-6
    assert 0.0 <= m["reward/frac_positive"] <= 1.0
    assert m == evaluate(policy, policy, str(out / "reward"), prompts, max_new_tokens=6, batch_size=4)


def test_evaluate_job_rejects_bad_input_before_ray(capsys):
    from jobs.evaluate import main

    with pytest.raises(SystemExit):
        main(["--num-prompts", "0"])
    assert "num_prompts=0 must be an integer >= 1" in capsys.readouterr().err
