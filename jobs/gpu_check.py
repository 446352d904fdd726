"""The GPU paths, checked on one GPU in minutes, downloading nothing (`make gpu-check`).

python jobs/gpu_check.py [--out DIR]

Without a GPU it says so in one line and exits 0 before Ray starts. With one it prints a RESULT line per figure:
  gpu_device                 torch sees the device (its name, and how many)
  gpu_sweep_frontier         a micro sweep whose trials each hold a GPU (--gpus-per-trial 1) ends with a frontier
  gpu_trainer_bf16_speedup   the f-DPO trainer's pairs/s in bf16 against fp32, the tiny-imdb policy, same pairs
  gpu_generation_speedup     Ray Data generation's samples/s on the GPU against the CPU, same prompts and seed
  gpu_generation_peak_share  the share of the GPU's measured bf16 matmul peak that generation reaches
Every model is built here (the micro world) or shipped (tiny-imdb); nothing reaches the hub.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any directory


def result(name: str, value: object) -> None:
    print(f"RESULT {name} {value}", flush=True)


def matmul_peak(torch, size: int = 8192, repeats: int = 20) -> float:
    """The GPU's measured bf16 matmul rate, FLOP/s: the denominator of the generation's share."""
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    torch.mm(a, b)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def trainer_speed(preferences: Path, out: Path, bf16: bool) -> float:
    """Pairs per second of the f-DPO trainer on ``preferences`` (the tiny-imdb policy, 2 epochs, timed whole: model
    loading and the reference pass included, the same for both precisions)."""
    from alignray.train import build_trainer, load_preferences
    from alignray.train_config import TrainConfig

    config = TrainConfig(data=str(preferences), out=str(out), epochs=2.0, batch_size=16, max_length=64)
    trainer = build_trainer(config, load_preferences(preferences), str(out), bf16=bf16, report_to="none")
    started = time.perf_counter()
    trainer.train()
    pairs = len(trainer.train_dataset) * config.epochs
    return pairs / (time.perf_counter() - started)


def generation_speed(prompts: list[str], use_gpu: bool) -> tuple[float, int]:
    """Samples per second of the Ray Data generation and scoring stages (tiny-imdb, 48 tokens), and the tokens, after
    a warm-up run on 8 prompts (Ray, the actors' imports and the file cache). Actor start-up stays in the timing."""
    from alignray.data.pipeline import run_stages

    run_stages(prompts[:8], "tiny-imdb", "tiny-imdb", 1, 8, seed=0, use_gpu=use_gpu)
    started = time.perf_counter()
    samples = run_stages(prompts, "tiny-imdb", "tiny-imdb", 4, 48, seed=0, use_gpu=use_gpu)
    return len(samples) / (time.perf_counter() - started), int(samples["completion_ids"].map(len).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="working directory (default: a temporary one)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        if shutil.which("nvidia-smi") and torch.version.cuda is None:  # a GPU box with the CPU wheel: not a pass
            print("gpu-check: nvidia-smi sees a GPU but this torch is a CPU build; reinstall with "
                  "make clean-venv && make TORCH_SPEC='torch>=2.6' gpu-check", flush=True)  # fmt: skip
            return 1
        print("gpu-check: no GPU here (torch.cuda.is_available() is False): nothing to check", flush=True)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Ray leaves CUDA visible to a worker that holds no GPU unless told: the CPU pass below must run on the CPU
    os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "1"
    out = Path(args.out or tempfile.mkdtemp(prefix="alignray-gpu-check-"))
    result("gpu_device", f"{torch.cuda.get_device_name(0).replace(' ', '_')}x{torch.cuda.device_count()}")

    from alignray.data.prompts import imdb_prefix_prompts, imdb_prompt_reviews
    from alignray.world import load_policy
    from alignray.world_build import BUILDS, build_world
    from jobs.sweep import main as sweep

    world = out / "micro-world"
    build_world(BUILDS["micro"], world, name="micro")
    summary = sweep(["--output", str(out / "sweep"), "--overwrite", "--policy", str(world / "policy"),
                     "--reward", str(world / "reward"), "--judge", str(world / "judge"), "--gpus-per-trial", "1",
                     "--num-trials", "4", "--divergences", "reverse_kl", "js_divergence", "--num-prompts", "12",
                     "--samples-per-prompt", "3", "--max-new-tokens", "8", "--max-length", "48", "--eval-prompts",
                     "8", "--confirmation-prompts", "8", "--max-nonword-increase", "0.5", "--max-garbled-increase",
                     "0.5"])  # fmt: skip
    result("gpu_sweep_frontier", len(summary["frontier"]))

    # the trainer: the tiny-imdb policy on preference pairs of its own, bf16 against fp32
    from alignray.data.config import PreferenceConfig
    from alignray.data.pipeline import build_preferences

    build_preferences(PreferenceConfig(out=str(out / "preferences"), num_prompts=128, samples_per_prompt=4))
    data = out / "preferences" / "preferences.parquet"
    speeds = {bf16: trainer_speed(data, out / f"train-{bf16}", bf16) for bf16 in (False, True)}
    print(f"trainer pairs/s: fp32 {speeds[False]:.1f}, bf16 {speeds[True]:.1f}", flush=True)
    result("gpu_trainer_bf16_speedup", f"{speeds[True] / speeds[False]:.2f}")

    _, tokenizer = load_policy("tiny-imdb", device="cpu")
    prompts = imdb_prefix_prompts(imdb_prompt_reviews("eval"), tokenizer, 256, seed=0)
    (gpu, tokens), (cpu, _) = generation_speed(prompts, True), generation_speed(prompts, False)
    print(f"generation samples/s: GPU {gpu:.1f}, CPU {cpu:.1f}", flush=True)
    result("gpu_generation_speedup", f"{gpu / cpu:.2f}")
    policy, _ = load_policy("tiny-imdb", device="cuda")
    parameters = sum(p.numel() for p in policy.parameters())
    achieved = 2 * parameters * tokens * gpu / (len(prompts) * 4)  # forward FLOPs per generated token, per second
    result("gpu_generation_peak_share", f"{achieved / matmul_peak(torch):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
