"""Reliability and security (issue 10): bad input refused before anything starts, faults survived, nothing leaked.

Test names carry their category for ``docs/reliability_figures.py``: ``test_bad_input_*`` (refused cleanly),
``test_fault_*`` (injected and survived), ``test_security_*``. The one real-Ray test, a two-node
``ray.cluster_utils.Cluster`` sweep with a trial that raises and a trial whose worker or node is killed, is marked
``slow``.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

import alignray.sweep.checks as checks
import alignray.sweep.driver as driver
import alignray.sweep.frontier as frontier
import alignray.sweep.plan as plan
from alignray.config import parse_config
from alignray.divergences import DIVERGENCES, get_divergence
from alignray.losses import LOSS_TYPES, preference_loss
from alignray.sweep.config import SweepConfig
from alignray.sweep.trial import FAULT_VARIABLE

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("alignray", "jobs", "bench", "analysis") for p in sorted((ROOT / d).rglob("*.py"))]


# --- bad input: refused with the field named, before Ray starts, writing nothing -----------------------------------


@pytest.fixture
def no_sweep(monkeypatch):
    """``jobs.sweep.main`` with ``run_sweep`` replaced by a recorder: a refusal must come before it."""
    import ray

    assert not ray.is_initialized()
    started = []
    monkeypatch.setattr(driver, "run_sweep", lambda config: started.append(config))
    yield started
    assert not ray.is_initialized(), "Ray started"


def _refused(argv: list[str], capsys, started: list) -> str:
    from jobs.sweep import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code not in (0, None)
    assert not started, "the sweep started"
    return capsys.readouterr().err


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return str(path)


SWEEP_CASES = {
    "unknown_divergence": (["--divergences", "reverse_kl", "revers_kl"],
                           ["divergence='revers_kl' is unknown", "did you mean 'reverse_kl'?", "Known: "]),
    "alpha_zero": (["--alpha-min", "0"], ["0 < alpha_min <= alpha_max < 1", "got 0.0"]),
    "alpha_above_one": (["--alpha-max", "1.5"], ["0 < alpha_min <= alpha_max < 1", "1.5"]),
    "beta_zero": (["--beta-min", "0"], ["beta_min=0.0 must be > 0"]),
    "beta_negative": (["--beta-max", "-1"], ["beta_max=-1.0 must be > 0"]),
    "learning_rate_zero": (["--learning-rate-min", "0"], ["learning_rate_min=0.0 must be > 0"]),
    "learning_rate_absurd": (["--learning-rate-max", "10"], ["learning_rate_max=10.0 is absurd", "(0, 1]"]),
    "grid_learning_rate_absurd": (["--search", "grid", "--grid-learning-rate", "3"],
                                  ["grid_learning_rate=3.0 is absurd", "(0, 1]"]),
    "point_learning_rate_absurd": (["--points-to-evaluate",
                                    '{"divergence": "reverse_kl", "beta": 0.1, "learning_rate": 50}'],
                                   ["learning_rate=50.0 is absurd", "(0, 1]"]),
    "inverted_beta_range": (["--beta-min", "1", "--beta-max", "0.5"], ["beta_min=1.0 exceeds beta_max=0.5"]),
    "inverted_learning_rate_range": (["--learning-rate-min", "1e-3", "--learning-rate-max", "1e-4"],
                                     ["learning_rate_min=0.001 exceeds learning_rate_max=0.0001"]),
    "inverted_alpha_range": (["--alpha-min", "0.8", "--alpha-max", "0.2"], ["alpha_min <= alpha_max", "0.8, 0.2"]),
    "trials_zero": (["--num-trials", "0"], ["num_trials=0 must be an integer >= 1"]),
    "trials_negative": (["--num-trials", "-3"], ["num_trials=-3 must be an integer >= 1"]),
    "trials_not_integer": (["--num-trials", "2.5"], ["num_trials='2.5' is not an integer"]),
    "unknown_flag": (["--num-trails", "4"], ["unrecognized arguments: --num-trails"]),
    "hub_id_offline": (["--policy", "someone/gpt2-imdb"],
                       ["policy='someone/gpt2-imdb'", "Cannot fetch hub model", "HF_HUB_OFFLINE is set",
                        "'tiny-imdb'"]),
    "storage_unparsable": (["--storage", "not a url"], ["storage='***' is not a SQLAlchemy URL", "sqlite:///"]),
    "storage_missing_directory": (["--storage", "sqlite:////nonexistent-alignray/study.db"],
                                  ["storage='sqlite:////nonexistent-alignray/study.db' cannot be opened",
                                   "/nonexistent-alignray does not exist"]),
    "storage_unreachable_server": (["--storage", "postgresql://sweeper@127.0.0.1:1/studies"],
                                   ["storage='postgresql://sweeper@127.0.0.1:1/studies' cannot be opened",
                                    "expected a SQLAlchemy URL of a reachable database"]),
    "storage_password_in_the_url": (["--storage", "postgresql://sweeper:hunter2@127.0.0.1:1/studies"],
                                    ["storage='postgresql://sweeper:***@127.0.0.1:1/studies' holds a password",
                                     "--storage-password-env"]),
    "storage_password_variable_unset": (["--storage", "postgresql://sweeper@127.0.0.1:1/studies",
                                         "--storage-password-env", "ALIGNRAY_UNSET_PASSWORD"],
                                        ["storage_password_env='ALIGNRAY_UNSET_PASSWORD' names an environment "
                                         "variable that is not set"]),
    "output_unwritable": (["--output", "/proc/alignray"], ["output='/proc/alignray' cannot be written"]),
    "cpus_per_trial_fraction": (["--cpus-per-trial", "0.0001"], ["cpus_per_trial=0.0001 must be >= 1"]),
    "point_outside_the_beta_range": (["--points-to-evaluate",
                                      '{"divergence": "reverse_kl", "beta": 50, "learning_rate": 1e-3}'],
                                     ["beta=50.0 is outside the searched range [0.05, 2]"]),
    "point_outside_the_alpha_range": (["--points-to-evaluate", '{"divergence": "alpha_divergence", "alpha": 0.99, '
                                       '"beta": 0.1, "learning_rate": 1e-3}'],
                                      ["alpha=0.99 is outside the searched range [0.1, 0.9]"]),
    "more_points_than_trials": (["--num-trials", "2", "--divergences", "reverse_kl", "--points-to-evaluate",
                                 '{"divergence": "reverse_kl", "beta": 0.1, "learning_rate": 1e-3}',
                                 '{"divergence": "reverse_kl", "beta": 0.2, "learning_rate": 1e-3}',
                                 '{"divergence": "reverse_kl", "beta": 0.3, "learning_rate": 1e-3}'],
                                ["holds 3 points but num_trials=2"]),
    "fewer_trials_than_two_per_divergence": (["--num-trials", "6"],
                                             ["num_trials=6 is fewer than 2 per divergence"]),
    "confirmed_without_fresh_seeds": (["--replicates", "0"], ["replicates=0 with confirmation_prompts set"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_bad_input_sweep_option(case, tmp_path, capsys, no_sweep):
    argv, messages = SWEEP_CASES[case]
    out = tmp_path / "exp"
    err = _refused(["--output", str(out), *argv], capsys, no_sweep)
    for message in messages:
        assert message in err, err
    assert "hunter2" not in err and "Traceback" not in err
    assert not out.exists()


YAML_CASES = {
    "unknown_key": ("betta_min: 0.1\n", ["unknown fields ['betta_min']"]),
    "malformed": ("beta_min: [0.1,\nbeta_max: 2\n", ["not valid YAML at line", "expected a mapping of field: value"]),
    "not_a_mapping": ("- beta_min\n- 0.1\n", ["expected a mapping of field: value"]),
    "number_string_not_a_number": ('beta_min: "0.1"\nbeta_max: "two"\n',
                                   ["beta_max='two' is not a number; expected a finite number"]),
    "python_tag": ("beta_min: !!python/object/apply:os.system ['true']\n", ["not valid YAML", "constructor"]),
    "empty_divergences": ("divergences: []\n", ["divergences=() is empty"]),
    "empty_loss_types": ("loss_types: []\n", ["loss_types=() is empty", "sigmoid, hinge, ipo"]),
    "divergences_a_string": ("divergences: reverse_kl\n", ["divergences='reverse_kl' is a single string"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_bad_input_sweep_yaml(case, tmp_path, capsys, no_sweep):
    text, messages = YAML_CASES[case]
    out = tmp_path / "exp"
    err = _refused(["--output", str(out), "--config", _yaml(tmp_path, text)], capsys, no_sweep)
    for message in messages:
        assert message in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_bad_input_numbers_written_as_yaml_strings_are_accepted(tmp_path):
    config = parse_config(
        SweepConfig, ["--config", _yaml(tmp_path, 'beta_min: "0.1"\nnum_trials: "12"\nlearning_rate_max: "1e-3"\n')]
    )
    assert (config.beta_min, config.num_trials, config.learning_rate_max) == (0.1, 12, 1e-3)
    assert isinstance(config.beta_min, float) and isinstance(config.num_trials, int)


def test_bad_input_model_path_without_a_model(tmp_path, capsys, no_sweep):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    for role in ("policy", "reward"):
        err = _refused(["--output", str(tmp_path / "exp"), f"--{role}", str(empty)], capsys, no_sweep)
        assert f"{role}='{empty}'" in err and "has no config.json" in err and "save_pretrained" in err, err
    assert not (tmp_path / "exp").exists()


def _saved_sweep(out: Path, study: str) -> dict:
    out.mkdir(parents=True)
    record = {"study": study, "config": dataclasses.asdict(SweepConfig(output=str(out)))}
    (out / checks.SWEEP_FILE).write_text(json.dumps(record))
    (out / "results.parquet").write_bytes(b"earlier results")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_bad_input_output_holding_another_experiment(tmp_path, capsys, no_sweep):
    out = tmp_path / "exp"
    before = _saved_sweep(out, "alignray-0123abcd")
    err = _refused(["--output", str(out)], capsys, no_sweep)
    assert f"output='{out}' already holds the sweep alignray-0123abcd" in err
    assert "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_input_output_holding_other_files_or_a_file(tmp_path, capsys, no_sweep):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # --overwrite deletes a sweep's directory, never someone else's files
        err = _refused(["--output", str(out), *extra], capsys, no_sweep)
        assert "holds files that are not an alignray sweep" in err and "--overwrite deletes only" in err
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file; name a directory" in _refused(["--output", str(a_file)], capsys, no_sweep)


def test_bad_input_resume_with_nothing_to_resume(tmp_path, capsys, no_sweep):
    err = _refused(["--output", str(tmp_path / "exp"), "--resume"], capsys, no_sweep)
    assert "holds no sweep to resume" in err and "drop --resume" in err
    assert not (tmp_path / "exp").exists()


def test_bad_input_preference_file_without_a_column_or_rows(tmp_path):
    from jobs.train import main

    cases = {
        "no_rejected.parquet": (pd.DataFrame({"prompt": ["a"], "chosen": ["b"]}), "lacks columns ['rejected']"),
        "no_rows.parquet": (pd.DataFrame({c: pd.Series([], dtype=str) for c in ("prompt", "chosen", "rejected")}),
                            "has no rows"),
    }  # fmt: skip
    for name, (frame, message) in cases.items():
        frame.to_parquet(tmp_path / name)
        with pytest.raises(SystemExit) as exit_:
            main(["--data", str(tmp_path / name), "--out", str(tmp_path / "run")])
        assert f"data='{tmp_path / name}'" in str(exit_.value.code) and message in str(exit_.value.code)
        assert "prompt, chosen and rejected" in str(exit_.value.code) or "at least one" in str(exit_.value.code)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(SystemExit, match="is not a readable parquet file"):
        main(["--data", str(tmp_path / "junk.parquet"), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_bad_input_empty_prompt_file(tmp_path):
    import ray

    from jobs.build_preferences import main

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "prefs"), "--prompts", "fixed", "--prompt-file", str(empty)])
    assert f"prompt_file='{empty}' gives no prompts" in str(exit_.value.code)
    assert not (tmp_path / "prefs").exists() and not ray.is_initialized()


def test_bad_input_refusals_print_no_traceback_from_the_command_line(tmp_path):
    """The same refusals through a real process: exit status 2, one error line, no Ray."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("beta_min: [\n")
    for argv, message in ((["--config", str(bad)], "not valid YAML"), (["--storage", "x"], "storage=")):
        run = subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--output", str(tmp_path / "exp"), *argv],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert run.returncode == 2 and message in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and "Ray" not in run.stdout
    assert not (tmp_path / "exp").exists()


# --- faults -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("name", DIVERGENCES)
def test_fault_extreme_log_ratios_give_finite_losses_and_gradients(name, loss_type, dtype):
    divergence = get_divergence(name, alpha=0.3) if name == "alpha_divergence" else get_divergence(name)
    grid = torch.linspace(-1000.0, 1000.0, 201)
    chosen, rejected = (t.flatten().to(dtype).requires_grad_() for t in torch.meshgrid(grid, grid, indexing="ij"))
    lengths = torch.full(chosen.shape, 7.0, dtype=dtype)
    loss = preference_loss(chosen, rejected, divergence, 0.1, loss_type, lengths, lengths)
    grads = torch.autograd.grad(loss, [chosen, rejected], grad_outputs=torch.ones_like(loss))
    assert loss.dtype == dtype and torch.isfinite(loss).all()
    assert all(torch.isfinite(g).all() for g in grads)


def test_fault_full_disk_leaves_earlier_results_intact(tmp_path):
    results = tmp_path / "results.parquet"
    pd.DataFrame({"trial": ["a"], "reward/mean": [1.0]}).to_parquet(results)
    before = results.read_bytes()
    (tmp_path / f".{results.name}.tmp").symlink_to("/dev/full")  # the write lands on a device that is always full
    table = pd.DataFrame({"trial": [f"t{i}" for i in range(20000)], "reward/mean": range(20000)})
    with pytest.raises(OSError, match=f"could not write {re.escape(str(results))}: .*earlier results are untouched"):
        plan.write_atomic(results, lambda p: table.to_parquet(p, index=False))
    assert results.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]  # no temporary file left
    with pytest.raises(OSError, match=errno.errorcode[errno.ENOSPC] + "|No space left"):
        (tmp_path / f".{results.name}.tmp").symlink_to("/dev/full")
        plan.write_atomic(results, lambda p: p.write_text("x" * 100_000))
    assert results.read_bytes() == before


def test_fault_every_trial_errored_still_gives_a_table_frontier_and_report(tmp_path):
    import shutil
    from types import SimpleNamespace

    from alignray.report import write_report

    out = tmp_path / "exp"
    objectives = ("reward/mean", "diversity/token_entropy")  # the fixture base's metrics
    config = SweepConfig(output=str(out), objectives=objectives)
    grid = [
        SimpleNamespace(config={"divergence": "js_divergence", "beta": 0.1, "learning_rate": 1e-3}, metrics={},
                        error=RuntimeError(f"RuntimeError: crash {i}"), checkpoint=None,
                        path=f"/x/run_trial_abcde{i}_{i}_beta=0.1")
        for i in range(2)
    ]  # fmt: skip
    table = frontier.collect_results([grid], config)
    table["pareto"] = frontier.frontier(table, config)
    assert list(table["status"]) == ["error", "error"] and not table["pareto"].any()
    assert table["reason"].str.contains("crash").all()
    # the experiment directory the driver leaves: the base policy evaluated, no trial finished
    shutil.copytree(ROOT / "tests" / "fixtures" / "experiment" / "base", out / "base")
    base = json.loads((out / "base" / "metrics.json").read_text())["metrics"]
    shown = driver._format_table(table, config, base)
    assert "base (SFT)" in shown
    finished = table[table["status"] == "ok"]
    reference = (base["reward/mean"], 0.5 * base["diversity/token_entropy"])
    volume = frontier.hypervolume(finished[["reward/mean", "diversity/token_entropy"]].to_numpy(), reference)
    assert volume == 0
    table.to_parquet(out / "results.parquet", index=False)
    summary = {"study": "alignray-0123abcd", "trials": 2, "errors": 2, "frontier": [], "hypervolume": volume,
               "reference_point": list(reference)}  # fmt: skip
    record = {"study": "alignray-0123abcd", "config": dataclasses.asdict(config), "summary": summary}
    (out / checks.SWEEP_FILE).write_text(json.dumps(record))

    written = write_report(out, resamples=50)
    assert {"report.md", "report.html", "pareto.png", "hypervolume.png"} <= set(written)
    assert all(path.is_file() for path in written.values())
    text = (out / "report.md").read_text()
    assert "2 trials (2 errored)" in text
    pick = text.split("## What to pick", 1)[1].split("\n## ", 1)[0]
    assert pick.strip() == "No trial finished: there is no frontier to pick from (see the errored trials below)."
    assert f"Hypervolume 0 against the reference point ({reference[0]:.4g}, {reference[1]:.4g})" in text
    per_divergence = text.split("## Per divergence and loss type", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in per_divergence.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 2 and rows[1].startswith("| base (SFT) |")  # the header and the base policy: no trial
    every = text.split("## Every trial", 1)[1].split("\n## ", 1)[0]
    for i in range(2):
        (row,) = [line for line in every.splitlines() if line.startswith(f"| abcde{i} | {i} | error | js_divergence")]
        assert row.endswith(f"| False | RuntimeError: crash {i} |"), row
    assert "No trial finished" in (out / "report.html").read_text()


@pytest.fixture
def read_only(tmp_path):
    """A directory holding earlier results that this process cannot write into (root: made immutable)."""
    directory = tmp_path / "exp"
    directory.mkdir()
    pd.DataFrame({"trial": ["a"]}).to_parquet(directory / "results.parquet")
    directory.chmod(0o555)
    immutable = False
    if os.access(directory, os.W_OK):  # root ignores modes
        immutable = subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0
        if not immutable:
            directory.chmod(0o755)
            pytest.skip("cannot make a read-only directory here (root without chattr)")
    yield directory
    if immutable:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    directory.chmod(0o755)


def test_fault_read_only_directory_gives_a_clear_error_and_earlier_results(read_only):
    results = read_only / "results.parquet"
    before = results.read_bytes()
    table = pd.DataFrame({"trial": ["b", "c"]})
    with pytest.raises(OSError, match=r"could not write .*results\.parquet: .*earlier results are untouched"):
        plan.write_atomic(results, lambda p: table.to_parquet(p, index=False))
    assert results.read_bytes() == before and [p.name for p in read_only.iterdir()] == ["results.parquet"]


# --- security -----------------------------------------------------------------------------------------------------


def _calls(name: str):
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == name:
                yield path, node


def test_security_no_remote_code_and_every_from_pretrained_refuses_it():
    loads = list(_calls("from_pretrained"))
    assert loads, "no from_pretrained call found: the check would prove nothing"
    for path, call in loads:
        keywords = {k.arg: k.value for k in call.keywords}
        flag = keywords.get("trust_remote_code")
        assert isinstance(flag, ast.Constant) and flag.value is False, f"{path}:{call.lineno}"
    for path in [*SOURCES, ROOT / "Makefile", ROOT / "cluster.yaml"]:
        assert "trust_remote_code=True" not in path.read_text().replace(" ", ""), path


def test_security_weights_are_safetensors_and_nothing_unpickles():
    for name in ("load", "loads", "Unpickler"):
        for path, call in _calls(name):
            owner = ast.unparse(call.func)
            assert not owner.startswith(("pickle.", "cloudpickle.", "dill.", "joblib.")), f"{path}:{call.lineno}"
            if owner == "torch.load":
                weights_only = {k.arg: k.value for k in call.keywords}.get("weights_only")
                assert isinstance(weights_only, ast.Constant) and weights_only.value is True, f"{path}:{call.lineno}"
    world = (ROOT / "alignray" / "world.py").read_text()
    assert "use_safetensors=True if local" in world  # a local model without safetensors weights is refused


def _makefile_commands(name: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+) :?= (.*)$", text, flags=re.M))
    expanded = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)
    return [line for line in expanded.splitlines() if name in line and not line.lstrip().startswith("#")]


def test_security_ray_token_auth_and_loopback_dashboards():
    starts = _makefile_commands("ray start")
    assert starts, "the Makefile starts no Ray"
    for line in starts:
        assert "RAY_AUTH_MODE=token" in line and "--dashboard-host 127.0.0.1" in line, line
    for line in _makefile_commands("ray job submit"):
        assert "RAY_AUTH_MODE=token" in line and "127.0.0.1" in line, line
    submit = (ROOT / "alignray" / "sweep" / "submit.py").read_text()  # make sweep's own head
    assert '"--dashboard-host", "127.0.0.1"' in submit and 'os.environ["RAY_AUTH_MODE"] = "token"' in submit
    readme = (ROOT / "README.md").read_text()
    assert "export RAY_AUTH_MODE=token" in readme
    assert all("--dashboard-host 127.0.0.1" in line for line in readme.splitlines() if "ray start" in line)
    for path in [*SOURCES, ROOT / "Makefile", ROOT / "cluster.yaml", ROOT / "README.md"]:
        text = path.read_text()
        assert "0.0.0.0" not in text and "RAY_AUTH_MODE=disabled" not in text, path
    assert "include_dashboard=False" in (ROOT / "alignray" / "sweep" / "driver.py").read_text()


def test_security_storage_password_is_never_printed_or_written(tmp_path, monkeypatch):
    url = "postgresql://sweeper:hunter2@db.internal:5432/studies"
    assert checks.masked_url(url) == "postgresql://sweeper:***@db.internal:5432/studies"
    assert "hunter2" not in checks.masked_url("postgresql+psycopg://u:hunter2@h/db")
    assert checks.masked_url("what://is:hunter2@this?").count("hunter2") == 0
    with pytest.raises(ValueError) as refused:  # it would be saved in sweep.json and Tune's state
        SweepConfig(storage=url)
    assert "hunter2" not in str(refused.value) and "sweeper:***@" in str(refused.value)
    # the password from the environment: joined in memory, never in the config that sweep.json records
    monkeypatch.setenv("ALIGNRAY_TEST_PASSWORD", "hunter2")
    config = SweepConfig(output=str(tmp_path / "exp"), storage="postgresql://sweeper@127.0.0.1:1/studies",
                         storage_password_env="ALIGNRAY_TEST_PASSWORD")  # fmt: skip
    assert "sweeper:hunter2@" in checks.study_storage_url(config)
    assert "hunter2" not in json.dumps(dataclasses.asdict(config))
    assert "hunter2" not in checks.masked_url(checks.study_storage_url(config))  # the search stage's announcement
    with pytest.raises(ValueError) as refused:
        checks.check_storage(config)
    assert "hunter2" not in str(refused.value) and "cannot be opened" in str(refused.value)


def test_bad_input_a_trial_bigger_than_the_cluster_ends_in_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "exp"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--output", str(out), "--workers-per-trial", "64",
         "--eval-prompts", "8"],
        capture_output=True, text=True, cwd=ROOT, env={**env, "RAY_ADDRESS": "local"}, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr[-2000:]
    assert "error: one trial needs 65.0 CPUs" in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert not out.exists()  # no sweep.json: a rerun is not met with "an experiment exists"


@pytest.mark.parametrize("study", ["../x", "/etc/alignray", "alignray-0123abcd/../../x", "", None])
def test_security_resumed_study_name_cannot_escape_the_storage_path(study, tmp_path, capsys, no_sweep):
    out = tmp_path / "exp"
    before = _saved_sweep(out, study)
    err = _refused(["--output", str(out), "--resume"], capsys, no_sweep)
    assert f"{checks.SWEEP_FILE} names the study {study!r}" in err and "alignray-1a2b3c4d" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_security_generated_study_names_pass_the_resume_check():
    import uuid

    names = {f"alignray-{uuid.uuid4().hex[:8]}" for _ in range(50)}
    assert all(checks.STUDY_NAME.fullmatch(name) for name in names)
    assert "alignray-{uuid.uuid4().hex[:8]}" in (ROOT / "alignray" / "sweep" / "driver.py").read_text()


# --- faults on a real two-node Ray cluster (last: the other tests check that Ray is not running) ------------


def _trial_on(study: str, raylet: int):
    """The running trial process of this sweep (its Tune working directory lies under ``<study>/working_dirs/``)
    started by the raylet ``raylet``, and its trial directory's name; (None, None) when there is none. Processes of
    other Ray clusters on the machine are never matched: the study name is this sweep's own."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if not (process.info["cmdline"] or [""])[0].startswith("ray::ImplicitFunc"):
            continue
        try:
            cwd = Path(process.cwd())
            parents = {parent.pid for parent in process.parents()}
        except psutil.Error:
            continue
        if cwd.parent.name == "working_dirs" and cwd.parent.parent.name == study and raylet in parents:
            return process, cwd.name
    return None, None


@pytest.fixture(scope="module")
def fault_sweep(tmp_path_factory, micro_world):
    """A sweep of two trials on two nodes: js_divergence trials raise (a crash: Tune retries, then records it), and
    the worker node is removed while a trial trains on it. The worker (1 CPU) joins the head (2 CPUs) after the
    preference stage, whose actor pool is sized from the cluster's total CPUs and would wait forever for a 1.5-CPU
    slot on 1-CPU nodes; a placeholder holds one head CPU until the removal, so that one trial runs on the worker."""
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from test_sweep import MICRO_SWEEP

    from jobs.sweep import main

    world, _ = micro_world
    out = tmp_path_factory.mktemp("faults") / "exp"
    tune = out.parent / "tune-shared"  # one machine: a local path every node reaches
    os.environ[FAULT_VARIABLE] = "raise:js_divergence"  # the nodes' workers inherit it
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    ray.init(address=cluster.address)
    argv = ["--output", str(out), "--policy", str(world / "policy"), "--reward", str(world / "reward"),
            "--judge", str(world / "judge"),
            "--tune-storage", str(tune), "--num-trials", "4", "--max-concurrent-trials", "2", "--max-failures", "2",
            "--divergences", "js_divergence", "reverse_kl", *MICRO_SWEEP]  # fmt: skip
    ended: dict = {}

    def sweep() -> None:  # Tune runs in this thread; Ray nodes can only be added from the main thread
        try:
            ended["summary"] = main(argv)
        except BaseException as err:  # noqa: BLE001 - re-raised below, in the test's thread
            ended["error"] = err

    @ray.remote(num_cpus=1)
    class Placeholder:
        def ready(self) -> bool:
            return True

    killed: dict = {}
    try:
        started = time.monotonic()
        thread = threading.Thread(target=sweep, daemon=True)
        thread.start()
        deadline = started + 1200
        while not (out / "preferences" / "card.json").is_file() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        head = ray.get_runtime_context().get_node_id()
        holder = Placeholder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
        ray.get(holder.ready.remote())
        worker = cluster.add_node(num_cpus=1, num_gpus=0)
        raylet = worker.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
        study = json.loads((out / checks.SWEEP_FILE).read_text())["study"]
        while thread.is_alive() and time.monotonic() < deadline:
            process, trial = _trial_on(study, raylet)
            if process is None:
                time.sleep(0.25)
                continue
            time.sleep(1)  # into training (a micro trial takes several seconds), before its report
            killed["done_before"] = bool(list(tune.glob(f"*/{trial}/checkpoint_*")))
            cluster.remove_node(worker, allow_graceful=False)
            killed["trial"] = trial
            break
        ray.kill(holder)
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
        if "error" in ended:
            raise ended["error"]
        yield out, ended["summary"], killed, time.monotonic() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.pop(FAULT_VARIABLE, None)


@pytest.mark.slow
def test_fault_killed_node_is_retried_and_the_sweep_finishes(fault_sweep, record_property):
    out, summary, killed, seconds = fault_sweep
    results = pd.read_parquet(out / "results.parquet")
    table = results[results["kind"] == "trial"]  # each trial's final model; its points and derived models besides
    record_property("trials_expected", 4)  # read by docs/reliability_figures.py: trials lost
    record_property("trials_recorded", len(table))
    print(f"worker node removed during {killed.get('trial')}; sweep {seconds:.0f} s")
    assert killed.get("trial"), "no trial was seen running on the worker node"
    assert killed["done_before"] is False  # removed mid-trial, before its report
    assert len(table) == 4 and table["trial"].is_unique and summary["trials"] == 4
    victim = re.search(r"divergence=(\w+?)(,|_\d|$)", killed["trial"]).group(1)
    row = table[table["trial"] == re.match(r"run_trial_([0-9a-f]+)_", killed["trial"]).group(1)]
    assert len(row) == 1
    if victim == "reverse_kl":  # retried on the head and finished
        assert row["status"].item() == "ok" and (out / "samples" / f"{row['trial'].item()}.parquet").is_file()
    else:  # retried, and then it crashed as injected: the crash is its recorded reason, not the lost node
        assert row["status"].item() == "error" and "injected crash" in row["reason"].item()
    assert (table.loc[table["divergence"] == "reverse_kl", "status"] == "ok").all()


@pytest.mark.slow
def test_fault_trial_that_raises_is_recorded_and_failed_in_the_study(fault_sweep):
    out, summary, _, _ = fault_sweep
    table = pd.read_parquet(out / "results.parquet")
    crashed = table[(table["divergence"] == "js_divergence") & (table["kind"] == "trial")]
    assert len(crashed) == 2 and (crashed["status"] == "error").all() and summary["errors"] == 2
    assert crashed["reason"].str.contains(f"RuntimeError: {FAULT_VARIABLE}: injected crash for js_divergence").all()
    study = optuna.load_study(
        study_name=summary["study"], storage=f"sqlite:///{out / 'study.db'}", sampler=optuna.samplers.RandomSampler()
    )
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]  # one study trial each: no retry counted twice

