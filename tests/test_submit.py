"""make sweep's submit path and where a job's results land, on real Ray heads: each on free ports with a HOME of its
own, so neither this machine's ~/.ray nor another Ray running here is touched, and each stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from alignray.sweep.config import SweepConfig
from alignray.sweep.submit import _stop_head, results_dir

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _short_dir() -> Path:
    """A directory under /tmp: Ray's socket paths inside its temp dir must stay under 107 characters."""
    return Path(tempfile.mkdtemp(prefix="ar-", dir="/tmp"))


def _env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment less any Ray setting (token, address, mode), with ``home`` as HOME."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(home), RAY_AUTH_MODE="token", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


def _ours(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _job_lines(output: str) -> list[str]:
    """The entrypoint's own lines in ``ray job submit``'s printout: after Ray's "Running entrypoint for job" line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Running entrypoint for job")) + 1
    return [line for line in lines[start:] if line.strip()]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """The mission's ``ray start --head``, run from the checkout with token auth on: its address and environment."""
    home = tmp_path_factory.mktemp("head-home")
    env = _env(home)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    temp_dir, port = _short_dir(), _free_port()
    ports = ["--port", _free_port(), "--ray-client-server-port", _free_port(), "--dashboard-agent-listen-port"]
    ports += [_free_port(), "--dashboard-port", port, "--min-worker-port", 0, "--max-worker-port", 0]
    command = [RAY, "start", "--head", "--dashboard-host", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0"]
    command += [*map(str, ports), "--disable-usage-stats", "--temp-dir", str(temp_dir)]
    try:
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
        address = f"http://127.0.0.1:{port}"
        yield SimpleNamespace(address=address, env={**env, "RAY_API_SERVER_ADDRESS": address}, temp_dir=temp_dir)
    finally:
        _stop_head(str(temp_dir))


def _ray_job_submit(head, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``ray job submit ARGS``, again while the new head's job agent is still starting."""
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            [RAY, "job", "submit", *args], cwd=cwd, env=head.env, capture_output=True, text=True, timeout=120
        )
        if "No available agent" not in done.stdout + done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(2.0)


def test_make_sweep_on_a_fresh_machine_makes_a_token_starts_a_head_and_stops_it(tmp_path):
    home = tmp_path / "home"  # a machine where Ray never ran: no ~/.ray/auth_token
    home.mkdir()
    scratch, port = _short_dir(), _free_port()  # make sweep's head gets its temp dir under scratch (TMPDIR)
    env = _env(home, RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{port}", TMPDIR=str(scratch))
    command = [sys.executable, "jobs/submit_sweep.py", "--output", str(tmp_path / "out"), "--help"]  # a quick job
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    finally:
        left = _ours(str(scratch))
        for process in left:
            process.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert "Traceback" not in printed
    assert "ray get-auth-token --generate" in printed and f"no Ray head at http://127.0.0.1:{port}" in printed
    assert "usage: sweep.py" in done.stdout and "SUCCEEDED" in done.stdout  # the job ran and its log came back
    token = home / ".ray" / "auth_token"
    assert token.is_file() and token.read_text().strip() and token.stat().st_mode & 0o077 == 0  # the owner's only
    real = Path(os.path.expanduser("~")) / ".ray" / "auth_token"  # this machine's own token is neither read nor made
    assert not real.is_file() or real.read_text().strip() != token.read_text().strip()
    assert not left, [p.info["cmdline"][:2] for p in left]  # the head it started is stopped...
    assert not _answers(port)  # ...dashboard included
    assert not (tmp_path / "out").exists()


def test_a_head_whose_token_this_machine_lacks_gets_one_sentence(head, tmp_path):
    command = [sys.executable, "jobs/submit_sweep.py", "--output", str(tmp_path / "out"), "--help"]
    for home, extra, says in [
        (tmp_path / "no-token", {}, "this machine has no Ray token"),
        (tmp_path / "other-token", {"RAY_AUTH_TOKEN": "0" * 32}, "this machine's Ray token is not its token"),
    ]:
        home.mkdir()
        env = {**_env(home, **extra), "RAY_API_SERVER_ADDRESS": head.address}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
        assert "Traceback" not in done.stdout + done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # one line
        assert done.stderr.startswith(f"error: the Ray head at {head.address} uses token authentication and {says}")
        assert "`ray get-auth-token` on the head" in done.stderr
        assert not (home / ".ray").exists()  # no token made: it would not be the head's


def test_the_mission_usage_line_prints_where_results_land_first(head):
    # `ray start --head` (the fixture), then `ray job submit -- python jobs/sweep.py` from the checkout; a policy that
    # does not exist ends the job right after its first line, before Ray starts in the driver or anything is written
    done = _ray_job_submit(head, "--", "python", "jobs/sweep.py", "--policy", "/nonexistent/alignray-policy")
    lines = _job_lines(done.stdout + done.stderr)
    assert lines[0] == f"[alignray] results: {ROOT / 'runs' / 'sweep'}", done.stdout + done.stderr
    # the refusal, one clean line (the policy's, or, once `make sweep` has filled runs/sweep, the output's)
    assert any(line.startswith("error: ") for line in lines) and "Traceback" not in done.stdout + done.stderr


def test_a_job_from_an_uploaded_working_dir_needs_an_absolute_output(head, tmp_path):
    work = tmp_path / "checkout"  # what `ray job submit --working-dir .` uploads, reduced to the job's script
    (work / "jobs").mkdir(parents=True)
    shutil.copy(ROOT / "jobs" / "sweep.py", work / "jobs" / "sweep.py")
    done = _ray_job_submit(head, "--working-dir", str(work), "--", "python", "jobs/sweep.py", cwd=work)
    printed = done.stdout + done.stderr
    assert "give --output an absolute path, e.g. --output $PWD/runs/sweep" in printed, printed
    assert "Traceback" not in printed and "[alignray] results:" not in printed
    assert done.returncode != 0 and "failed" in printed
    assert not list(head.temp_dir.glob("**/working_dir_files/*/runs")) and not (work / "runs").exists()


def test_results_dir_refuses_relative_paths_only_in_an_upload(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert results_dir(SweepConfig(output="runs/x")) == tmp_path / "runs" / "x"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {"working_dir": "gcs://_ray_pkg_1.zip"}}')
    assert results_dir(SweepConfig(output=str(tmp_path / "y"))) == tmp_path / "y"
    with pytest.raises(ValueError, match=r"tune_storage='tune' is relative .* --tune-storage \$PWD/tune"):
        results_dir(SweepConfig(output=str(tmp_path / "y"), tune_storage="tune"))
    assert results_dir(SweepConfig(output=str(tmp_path / "y"), tune_storage="s3://bucket/tune")) == tmp_path / "y"
    with pytest.raises(ValueError, match=r"storage='sqlite:///study.db' is relative .* sqlite:///\$PWD/study.db"):
        results_dir(SweepConfig(output=str(tmp_path / "y"), storage="sqlite:///study.db"))
    assert results_dir(SweepConfig(output=str(tmp_path / "y"), storage=f"sqlite:///{tmp_path}/s.db")) == tmp_path / "y"
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    copy = tmp_path / "session" / "runtime_resources" / "working_dir_files" / "_ray_pkg_2"  # no job config: the cwd
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    with pytest.raises(ValueError, match=r"output='runs/sweep' is relative"):
        results_dir(SweepConfig())


def test_a_storage_password_never_reaches_the_jobs_command_line(capsys):
    from alignray.sweep.submit import submit_sweep

    code = submit_sweep(["--output", "/tmp/alignray-x", "--storage", "postgresql://sweeper:hunter2@db/studies"])
    printed = capsys.readouterr()
    assert code == 2 and "hunter2" not in printed.out + printed.err
    assert printed.err.startswith("error: storage='postgresql://sweeper:***@db/studies' holds a password")
    assert submit_sweep(["--storage=postgresql://u:hunter2@db/x"]) == 2
