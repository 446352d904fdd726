"""Scheduling as a GPU cluster sees it, without a GPU: a local Ray cluster of two nodes that declare GPUs as
resources (none exist). Trials of one GPU run one per declared GPU; a multi-worker run's Ray Train workers hold the
GPUs its placement group gives them; everything trains on CPU, and the job log says so once."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def gpu_cluster():
    """Two nodes of 3 CPUs and 2 declared GPUs each: GPUs, not CPUs, bound how many one-GPU trials fit."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "num_gpus": 2})
    cluster.add_node(num_cpus=3, num_gpus=2)
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    cluster.wait_for_nodes()
    yield ray
    ray.shutdown()
    cluster.shutdown()


def test_one_gpu_trials_run_one_per_declared_gpu_on_cpu_and_the_log_says_so_once(
    tmp_path, micro_world, gpu_cluster, capsys
):  # fmt: skip
    from test_sweep import MICRO_SWEEP

    from jobs.sweep import main

    world, _ = micro_world
    summary = main(["--output", str(tmp_path / "exp"), "--tune-storage", str(tmp_path / "tune"),
                    "--policy", str(world / "policy"), "--reward", str(world / "reward"), "--judge", "none",
                    "--num-trials", "4", "--divergences", "reverse_kl", "js_divergence", "--gpus-per-trial", "1",
                    "--cpus-per-trial", "1", "--eval-points", "1", "--soups", "false",
                    *MICRO_SWEEP[:-2], "--confirmation-prompts", "0"])  # fmt: skip
    said = capsys.readouterr().out
    # four declared GPUs, one a trial: four at once (the six CPUs, one a trial, would allow six)
    assert summary["concurrent_trials"] == 4
    assert said.count("torch sees no CUDA device") == 1, said
    table = pd.read_parquet(tmp_path / "exp" / "results.parquet")
    trials = table[table["kind"] == "trial"]
    assert (trials["status"] == "ok").all() and (trials["worker/gpus"] == 1).all()
    spans = [(end - total, end) for total, end in zip(trials["time/total_s"], trials["time/ended_unix"], strict=True)]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])  # side by side
    assert summary["frontier"]


def test_ray_train_workers_hold_the_gpus_of_their_placement_group_and_train_on_cpu(
    tmp_path, micro_world, gpu_cluster, caplog
):  # fmt: skip
    """Ray picks NCCL for workers that hold GPUs, which a node without usable CUDA lacks: the run would crash.
    ``process_group_backend`` gives gloo there, the workers train on CPU, and the log says so once."""
    from ray.util import placement_group_table

    from alignray.train import train
    from alignray.train_config import TrainConfig

    world, _ = micro_world
    data = tmp_path / "prefs.parquet"
    pd.DataFrame([("the film", " was great fun", " was dull"), ("I think", " it is good", " it is bad")] * 4,
                 columns=["prompt", "chosen", "rejected"]).to_parquet(data)  # fmt: skip
    before = set(placement_group_table())
    config = TrainConfig(data=str(data), policy=str(world / "policy"), out=str(tmp_path / "run"), batch_size=4,
                         workers=2, use_gpu=True, learning_rate=1e-3, max_length=48)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="alignray.train"):
        result = train(config, run_name="fake-gpus", storage_path=str(tmp_path / "train"))
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file() and result["metrics"]["global_step"] > 0
    assert [r.message for r in caplog.records].count(
        "Ray Train workers hold GPUs, but torch sees no CUDA device: they train on CPU (gloo)") == 1
    [group] = [g for key, g in placement_group_table().items() if key not in before]
    assert group["bundles"] == {0: {"GPU": 1.0}, 1: {"GPU": 1.0}} and group["strategy"] == "PACK"
    nodes = {n["NodeID"]: n["Resources"].get("GPU", 0) for n in gpu_cluster.nodes() if n["Alive"]}
    placed = list(group["bundles_to_node_id"].values())
    assert len(set(placed)) == 1 and nodes[placed[0]] >= 2  # packed on one node that holds two GPUs
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["pairs"] == 8
