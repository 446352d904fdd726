"""``make sweep``: submit ``jobs/sweep.py`` as a Ray job to the local head, starting one (and stopping it after) when
none runs. Ray's own pieces do the work: ``ray start --head``, the ``JobSubmissionClient`` and its log stream.

The head it starts has token authentication on (``RAY_AUTH_MODE=token``), its dashboard on 127.0.0.1 and a temporary
directory of its own, by which its processes, and only they, are stopped afterwards (``ray stop`` would stop every
Ray on the machine).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["DASHBOARD", "UPLOAD_EXCLUDES", "submit_sweep"]

DASHBOARD = "http://127.0.0.1:8265"
UPLOAD_EXCLUDES = [".venv/", "runs/", ".git/", "*.egg-info/", "__pycache__/", ".pytest_cache/", ".ruff_cache/"]
"""Kept out of the job's working-directory upload."""


def _client(timeout: float = 0.0):
    """A job client of the head at ``DASHBOARD``, or None when none answers within ``timeout`` seconds."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            return JobSubmissionClient(DASHBOARD)
        except (ConnectionError, RuntimeError):
            if time.monotonic() > deadline:
                return None
            time.sleep(1.0)


def _start_head(temp_dir: str) -> None:
    ray = str(Path(sys.executable).with_name("ray"))
    command = [ray, "start", "--head", "--dashboard-host", "127.0.0.1", "--disable-usage-stats"]
    subprocess.run([*command, "--temp-dir", temp_dir], check=True, stdout=subprocess.DEVNULL)


def _stop_head(temp_dir: str) -> None:
    """Stop the processes of the head started under ``temp_dir``, and no other Ray."""
    import psutil

    ours = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in process.info["cmdline"] or []):
                ours.append(process)
        except psutil.Error:
            continue
    for process in ours:
        process.terminate()
    _, alive = psutil.wait_procs(ours, timeout=15)
    for process in alive:
        process.kill()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(client, entrypoint: str, working_dir: str) -> str:
    """Submit, waiting out a head whose job agent is still starting."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return client.submit_job(
                entrypoint=entrypoint, runtime_env={"working_dir": working_dir, "excludes": UPLOAD_EXCLUDES}
            )
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


async def _follow(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def submit_sweep(sweep_args: list[str], working_dir: str = ".") -> int:
    """Run ``jobs/sweep.py sweep_args`` as a Ray job from ``working_dir``; its exit code (0: the job succeeded)."""
    from ray.job_submission import JobStatus

    os.environ.setdefault("RAY_AUTH_MODE", "token")
    client, temp_dir = _client(), None
    if client is None:
        temp_dir = tempfile.mkdtemp(prefix="alignray-ray-")
        print(f"[alignray] no Ray head at {DASHBOARD}: starting one (token auth on, dashboard on 127.0.0.1)")
        _start_head(temp_dir)
        client = _client(timeout=60)
    else:
        print(f"[alignray] submitting to the Ray head at {DASHBOARD}")
    job_id = None
    try:
        entrypoint = shlex.join([sys.executable, "jobs/sweep.py", *sweep_args])
        job_id = _submit(client, entrypoint, working_dir)
        print(f"[alignray] job {job_id}: {entrypoint}")
        try:
            asyncio.run(_follow(client, job_id))
        except RuntimeError as err:  # the log stream dropped: the job goes on, so wait for it rather than stop it
            print(f"[alignray] log stream lost ({err}); waiting for job {job_id}")
        while not (status := client.get_job_status(job_id)).is_terminal():
            time.sleep(5.0)
        print(f"[alignray] job {job_id}: {status}")
        return 0 if status == JobStatus.SUCCEEDED else 1
    except KeyboardInterrupt:
        if job_id is not None:
            client.stop_job(job_id)
        return 130
    finally:
        if temp_dir is not None:
            print("[alignray] stopping the Ray head this run started")
            _stop_head(temp_dir)
