"""``make sweep``: submit ``jobs/sweep.py`` as a Ray job to the local head, starting one (and stopping it after) when
none runs. Ray's own pieces do the work: ``ray get-auth-token --generate``, ``ray start --head``, the
``JobSubmissionClient`` and its log stream.

The head it looks for answers at ``DASHBOARD``, or at ``RAY_API_SERVER_ADDRESS`` (Ray's own variable for the job
server) when that is set. The head it starts has token authentication on (``RAY_AUTH_MODE=token``; on a machine that
never ran Ray the token is made first, as ``ray start`` wants one), its dashboard on 127.0.0.1, its other ports free
ones (another Ray on the machine is left alone) and a temporary directory of its own, by which its processes, and only
they, are stopped afterwards (``ray stop`` would stop every Ray on the machine).

A job runs from Ray's uploaded copy of the working directory, which Ray deletes later: ``results_dir`` refuses a
relative output there.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from alignray.sweep.config import SweepConfig

__all__ = ["DASHBOARD", "UPLOAD_EXCLUDES", "results_dir", "submit_sweep", "uploaded_working_dir"]

DASHBOARD = "http://127.0.0.1:8265"
"""Where ``make sweep`` looks for a head, unless ``RAY_API_SERVER_ADDRESS`` names another."""
UPLOAD_EXCLUDES = [".venv/", "runs/", ".git/", "*.egg-info/", "__pycache__/", ".pytest_cache/", ".ruff_cache/"]
"""Kept out of the job's working-directory upload."""
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def uploaded_working_dir() -> str | None:
    """The working directory Ray uploaded for the job this process drives (its URI or local copy), else None.

    A job driver reads its runtime env from ``RAY_JOB_CONFIG_JSON_ENV_VAR`` (set by Ray's job supervisor) and runs in
    the unpacked copy under ``<session>/runtime_resources/working_dir_files/``.
    """
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    except json.JSONDecodeError:
        job = {}
    working_dir = (job.get("runtime_env") or {}).get("working_dir") if isinstance(job, dict) else None
    if working_dir:
        return str(working_dir)
    cwd = Path.cwd()
    return str(cwd) if "working_dir_files" in cwd.parts else None


def results_dir(config: SweepConfig) -> Path:
    """The sweep's results directory, absolute; ValueError when a relative ``output``, ``tune_storage`` or SQLite
    ``storage`` would land in Ray's uploaded copy of the working directory, which nobody looks in and Ray deletes."""
    upload = uploaded_working_dir()
    paths = {"output": config.output, "tune_storage": config.tune_storage}
    if config.storage and config.storage.startswith("sqlite:///"):
        paths["storage"] = config.storage.removeprefix("sqlite:///")  # sqlite:///x.db: relative; sqlite:////x: not
    for field, path in paths.items():
        if upload and path and "://" not in path and not Path(path).expanduser().is_absolute():
            flag = f"--{field.replace('_', '-')}"
            example = f"sqlite:///$PWD/{path}" if field == "storage" else f"$PWD/{path}"
            raise ValueError(
                f"{field}={getattr(config, field)!r} is relative and this job runs from Ray's temporary copy of the "
                f"working directory ({upload}), where results would be lost: give {flag} an absolute path, e.g. "
                f"{flag} {example}"
            )
    return Path(config.output).expanduser().resolve()


def _auth_mode(dashboard: str) -> str | None:
    """The head's authentication mode ("token", "disabled"; "unknown" for a Ray without the endpoint), or None when
    no head answers at ``dashboard``. The endpoint is public: it needs no token."""
    import requests

    try:
        response = requests.get(f"{dashboard}/api/authentication_mode", timeout=5)
    except requests.RequestException:
        return None
    if not response.ok:
        return "unknown"
    try:
        return str(response.json().get("authentication_mode", "unknown"))
    except ValueError:
        return "unknown"


def _has_token() -> bool:
    """Whether Ray finds a token: ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    return loader.has_token(ignore_auth_mode=True)


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _generate_token() -> None:
    """``ray get-auth-token --generate``: a new token in ``~/.ray/auth_token`` (its printout, the token, discarded),
    readable by its owner only."""
    subprocess.run([_ray_cli(), "get-auth-token", "--generate"], check=True, capture_output=True, umask=0o077)
    (Path.home() / ".ray" / "auth_token").chmod(0o600)  # made owner-only already (umask); a token made earlier too


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_head(temp_dir: str, dashboard: str = DASHBOARD) -> None:
    port = urlsplit(dashboard).port or 8265
    command = [_ray_cli(), "start", "--head", "--dashboard-host", "127.0.0.1", "--disable-usage-stats"]
    command += ["--dashboard-port", str(port), "--port", str(_free_port()), "--ray-client-server-port"]
    command += [str(_free_port()), "--dashboard-agent-listen-port", str(_free_port())]
    command += ["--min-worker-port", "0", "--max-worker-port", "0"]
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
    _, alive = psutil.wait_procs(ours, timeout=5)  # the GCS server and the autoscaler monitor outlive SIGTERM
    for process in alive:
        process.kill()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_head(dashboard: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _auth_mode(dashboard) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray head started for this run does not answer at {dashboard}")
        time.sleep(1.0)


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


OWN_HEAD = "or export RAY_API_SERVER_ADDRESS=http://127.0.0.1:8266 so that make sweep starts a head of its own"


def _token_error(dashboard: str, mode: str, have_token: bool) -> str:
    if mode == "disabled":
        return (
            f"error: the Ray head at {dashboard} runs without token authentication: restart it with token auth on "
            f"(`make ray-up`), {OWN_HEAD}"
        )
    lacks = "this machine's Ray token is not its token" if have_token else "this machine has no Ray token"
    return (
        f"error: the Ray head at {dashboard} uses token authentication and {lacks}: copy the head's token (`ray "
        f"get-auth-token` on the head) to ~/.ray/auth_token or export RAY_AUTH_TOKEN, {OWN_HEAD}"
    )


def _storage_password(sweep_args: list[str]) -> str | None:
    """The refusal of a ``--storage`` URL among ``sweep_args`` that holds a password (the sweep config's own rule,
    ``storage_password_refusal``), with the password hidden; None when there is none."""
    from alignray.sweep.config import storage_password_refusal

    for i, arg in enumerate(sweep_args):
        value = arg.partition("=")[2] if arg.startswith("--storage=") else None
        if arg == "--storage" and i + 1 < len(sweep_args):
            value = sweep_args[i + 1]
        refusal = storage_password_refusal(value)
        if refusal:
            return refusal
    return None


def submit_sweep(sweep_args: list[str], working_dir: str = ".") -> int:
    """Run ``jobs/sweep.py sweep_args`` as a Ray job from ``working_dir``; its exit code (0: the job succeeded)."""
    secret = _storage_password(sweep_args)
    if secret:  # the job's command line is printed and kept by Ray: refuse before it is made
        print(f"error: {secret}", file=sys.stderr)
        return 2
    os.environ["RAY_AUTH_MODE"] = "token"  # make sweep keeps token auth on; set before Ray is imported (read once)
    dashboard = os.environ.get("RAY_API_SERVER_ADDRESS") or DASHBOARD
    os.environ["RAY_API_SERVER_ADDRESS"] = dashboard  # else the job client would follow RAY_ADDRESS instead
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus, JobSubmissionClient

    mode, temp_dir = _auth_mode(dashboard), None
    if mode is None:
        if urlsplit(dashboard).hostname not in LOCAL_HOSTS:
            print(f"error: no Ray head answers at {dashboard}: start it, or unset RAY_API_SERVER_ADDRESS so that "
                  "make sweep starts a local head", file=sys.stderr)  # fmt: skip
            return 1
        if not _has_token():
            print("[alignray] no Ray token on this machine: making one with `ray get-auth-token --generate` "
                  "(~/.ray/auth_token)")  # fmt: skip
            _generate_token()
        temp_dir = tempfile.mkdtemp(prefix="alignray-ray-")
        print(f"[alignray] no Ray head at {dashboard}: starting one (token auth on, dashboard on 127.0.0.1)")
    elif mode == "disabled" or not _has_token():
        print(_token_error(dashboard, mode, have_token=_has_token()), file=sys.stderr)
        return 1
    else:
        print(f"[alignray] submitting to the Ray head at {dashboard}")
    job_id = client = None
    try:
        if temp_dir is not None:
            try:
                _start_head(temp_dir, dashboard)
                _wait_for_head(dashboard, timeout=60)
            except (subprocess.CalledProcessError, RuntimeError) as err:
                reason = f"{err}; `ray start`'s own message is above"
                print(f"error: no Ray head could be started at {dashboard} ({reason}): free that port, {OWN_HEAD}",
                      file=sys.stderr)  # fmt: skip
                return 1
        client = JobSubmissionClient(dashboard)
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
    except AuthenticationError:
        print(_token_error(dashboard, mode or "token", have_token=_has_token()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if job_id is not None and client is not None:
            client.stop_job(job_id)
        return 130
    finally:
        if temp_dir is not None:
            print("[alignray] stopping the Ray head this run started")
            _stop_head(temp_dir)
