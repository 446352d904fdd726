"""``make gpu-check`` (``jobs/gpu_check.py``) on a machine without a GPU: it says so and stops before Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_without_a_gpu_says_so_in_one_line_and_exits_before_ray(monkeypatch, capsys):
    """``make gpu-check`` on a machine without a GPU: one line, exit 0, Ray never started."""
    import ray
    import torch

    from jobs.gpu_check import main

    def no_ray(*args, **kwargs):
        raise AssertionError("gpu-check started Ray without a GPU")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr(ray, "init", no_ray)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no GPU" in out and "RESULT" not in out
    done = subprocess.run([sys.executable, str(ROOT / "jobs" / "gpu_check.py")], capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.count("\n") == 1 and "no GPU" in done.stdout


def test_gpu_check_refuses_a_cpu_torch_on_a_machine_with_a_gpu(monkeypatch, capsys):
    """A GPU box whose venv holds the CPU wheel is not a pass: it says how to install the CUDA one, and fails."""
    import torch

    from jobs.gpu_check import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert main([]) == 1 and "CPU build" in capsys.readouterr().out
