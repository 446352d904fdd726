"""The report: built from a recorded tiny-imdb sweep (tests/fixtures/experiment, 10 trials, 40 prompts x 2 samples);
the statistics on distributions whose answer is known."""

from __future__ import annotations

import ast
import json
import re
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alignray.metrics import metrics_from_samples
from alignray.report import (
    POOLED_METRICS,
    WORD_METRICS,
    Interval,
    PromptTable,
    divergence_table,
    hypervolume_figure,
    load_experiment,
    metric_intervals,
    paired_difference,
    pareto_figure,
    write_comparison,
    write_report,
)
from alignray.report.comparison_figure import comparison_info
from alignray.report.document import render_html, render_markdown
from alignray.report.experiment import hypervolume_history, matched_kl, reference_point
from alignray.report.figures import (
    HOLLOW,
    draw_histograms,
    draw_pareto,
    draw_reward_kl,
    histogram_info,
    hypervolume_info,
    pareto_info,
    reward_kl_info,
)
from alignray.report.formatting import num
from alignray.report.interactive import draw_interactive, interactive_info
from alignray.report.stats import Paired, bootstrap_p_value, holm, holm_adjusted
from alignray.report.watch import tokens, watch_info
from alignray.sweep.pareto import pareto_mask
from alignray.vocabulary import words

FIXTURE = Path(__file__).parent / "fixtures" / "experiment"
RESAMPLES = 300


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "exp"
    shutil.copytree(FIXTURE, out)
    return out, write_report(out, resamples=RESAMPLES)


def _samples(rng: np.random.Generator, prompts: int, per_prompt: int, mean: float, prompt_sd: float) -> pd.DataFrame:
    """Rewards with a strong prompt effect (samples of one prompt correlate): the bootstrap must resample prompts."""
    effect = np.repeat(rng.normal(0.0, prompt_sd, prompts), per_prompt)
    reward = mean + effect + rng.normal(0.0, 0.3, prompts * per_prompt)
    return pd.DataFrame(
        {
            "prompt_id": np.repeat(np.arange(prompts), per_prompt),
            "prompt": np.repeat([f"prompt {i}" for i in range(prompts)], per_prompt),
            "reward": reward,
            "positive": reward > 0,
            "logp": rng.normal(-50, 5, prompts * per_prompt),
            "entropy": rng.uniform(30, 40, prompts * per_prompt),
            "ref_logp": rng.normal(-55, 5, prompts * per_prompt),
            "tokens": 10,
        }
    )


def _dominated_area(points: np.ndarray, reference: tuple[float, float]) -> float:
    """The area the points dominate above ``reference``, by brute force: the union of the rectangles from the
    reference to each point, summed cell by cell over the grid their corners make (no Pareto maths)."""
    above = [(x, y) for x, y in points if x > reference[0] and y > reference[1]]
    xs = sorted({reference[0], *(x for x, _ in above)})
    ys = sorted({reference[1], *(y for _, y in above)})
    return sum(
        (x1 - x0) * (y1 - y0)
        for x0, x1 in pairwise(xs)
        for y0, y1 in pairwise(ys)
        if any(x >= x1 and y >= y1 for x, y in above)
    )


def test_report_writes_markdown_html_and_pngs_of_the_expected_size(report):
    out, written = report
    pngs = {"pareto.png", "reward_kl.png", "rewards.png", "hypervolume.png"}
    assert set(written) == {"report.md", "report.html", "answer.csv", "answer_kl.csv", *pngs}
    assert all(path.parent == out and path.is_file() for path in written.values())
    sizes = {"pareto.png": (1300, 550), "reward_kl.png": (800, 500), "hypervolume.png": (800, 400),
             "rewards.png": (800, 780)}  # fmt: skip
    for name, size in sizes.items():
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size == size, name
            assert np.asarray(image.convert("L")).std() > 10, f"{name} is blank"
    text = (out / "report.md").read_text()
    for name in sizes:
        assert f"]({name})" in text
    assert text.count("| base (SFT) |") == 1
    rows = [line for line in _section(text, "Per divergence and loss type").splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| divergence |") and rows[1].startswith("| base (SFT) |")  # the base's row first
    assert text.index("## The answer per divergence") < text.index("](pareto.png)")  # the answer before any figure


def test_html_is_self_contained(report):
    out, _ = report
    page = (out / "report.html").read_text()
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts and not any("src" in attributes for attributes in scripts)
    # plotly.js holds link strings of its own (map attributions) that it fetches nothing with: look outside scripts
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.DOTALL)
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", markup)
    assert references and all(r.startswith(("data:", "#")) for r in references), [r[:60] for r in references]
    assert "<link" not in markup and "@import" not in markup and "url(" not in markup
    assert markup.count("data:image/png;base64,") == 4
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js is inline, not fetched


def test_frontier_drawn_is_the_frontier_computed():
    experiment = load_experiment(FIXTURE)
    figure = pareto_figure(experiment)
    (line,) = [line for line in figure.axes[0].lines if line.get_gid() == "frontier"]
    drawn = sorted(zip(line.get_xdata(), line.get_ydata(), strict=True))
    ok = experiment.results[experiment.results["status"] == "ok"]
    points = ok[["reward/mean", "diversity/token_entropy"]].to_numpy()
    undominated = [p for i, p in enumerate(points)  # by definition, not by the pareto_mask the figure may use
                   if not any((q >= p).all() and (q > p).any() for j, q in enumerate(points) if j != i)]  # fmt: skip
    computed = sorted((d, r) for r, d in undominated)
    assert drawn == computed and len(drawn) == ok["pareto"].sum() >= 2
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert len(labels) == len(drawn) and all(label.startswith("β=") for label in labels)


def test_prompt_table_recomputes_metrics_as_metrics_from_samples_does():
    samples = pd.read_parquet(FIXTURE / "base" / "samples.parquet")
    table = PromptTable(samples)
    assert len(table.names) == 12 and set(WORD_METRICS) <= set(table.names)
    at_equal = table.metrics(np.ones(len(table)))
    expected = metrics_from_samples(samples)
    for name in table.names:
        assert at_equal[name] == pytest.approx(expected[name], rel=1e-9), name
    # a resample: prompt 0 drawn three times, prompt 1 never, the rest once
    weights = np.ones(len(table))
    weights[0], weights[1] = 3, 0
    by_prompt = dict(tuple(samples.groupby("prompt_id")))
    rows = pd.concat([by_prompt[0]] * 3 + [by_prompt[p] for p in table.prompt_ids[2:]])
    resampled, expected = table.metrics(weights[None]), metrics_from_samples(rows)
    for name in table.names:
        assert resampled[name][0] == pytest.approx(expected[name], rel=1e-9), name


def test_bootstrap_interval_covers_a_known_mean_at_about_its_nominal_rate():
    rng = np.random.default_rng(0)
    mean, runs, covered, widths = 0.7, 200, 0, []
    for seed in range(runs):
        found = metric_intervals(_samples(rng, 30, 4, mean, prompt_sd=1.0), resamples=400, seed=seed)["reward/mean"]
        covered += found.low <= mean <= found.high
        widths.append(found.high - found.low)
    # 95% nominal; resampling samples instead of prompts would ignore the prompt effect and cover ~75%
    assert 0.89 <= covered / runs <= 0.99, covered
    assert np.mean(widths) == pytest.approx(2 * 1.96 * np.sqrt(1.0 + 0.3**2 / 4) / np.sqrt(30), rel=0.2)


def test_pooled_token_metrics_get_the_estimate_plus_minus_z_bootstrap_standard_errors():
    base = pd.read_parquet(FIXTURE / "base" / "samples.parquet")
    found, expected = metric_intervals(base, resamples=1000), metrics_from_samples(base)
    rng = np.random.default_rng(3)
    by_prompt = [rows for _, rows in base.groupby("prompt_id")]
    drawn = [metrics_from_samples(pd.concat([by_prompt[i] for i in rng.integers(0, len(by_prompt), len(by_prompt))]))
             for _ in range(200)]  # fmt: skip
    for name in POOLED_METRICS:
        interval, values = found[name], np.array([d[name] for d in drawn])
        assert interval.estimate == pytest.approx(expected[name], rel=1e-9), name
        # a repeated prompt repeats its completions and lowers a pooled metric: the resamples fall below the
        # estimate, so a percentile or BCa interval would sit below it too; this one is centred on it
        assert (values < interval.estimate).mean() > 0.9, name
        half = interval.high - interval.estimate
        assert interval.estimate - interval.low == pytest.approx(half, rel=1e-9) and half > 0, name
        assert half == pytest.approx(1.96 * values.std(ddof=1), rel=0.2), name
    trial = pd.read_parquet(FIXTURE / "samples" / "dd903de4.parquet")
    paired = paired_difference(trial, base, "diversity/token_entropy", resamples=1000)
    difference = paired.difference
    assert difference.estimate == pytest.approx(metrics_from_samples(trial)["diversity/token_entropy"]
                                                - expected["diversity/token_entropy"], rel=1e-9)  # fmt: skip
    assert difference.high - difference.estimate == pytest.approx(difference.estimate - difference.low, rel=1e-9)
    assert difference.low < difference.estimate < difference.high


def test_word_metrics_follow_the_given_vocabulary_and_need_the_completion_text(report):
    base = pd.read_parquet(FIXTURE / "base" / "samples.parquet")
    every = frozenset(word for text in base["completion"] for word in words(text))
    at_equal = PromptTable(base, vocabulary=every).metrics(np.ones(base["prompt_id"].nunique()))
    assert at_equal["fluency/nonword_rate"] == 0.0
    assert at_equal["diversity/word_entropy"] == pytest.approx(
        metrics_from_samples(base, every)["diversity/word_entropy"], rel=1e-9
    )
    found = metric_intervals(base, resamples=RESAMPLES)["fluency/nonword_rate"]  # a ratio of sums: BCa
    assert 0 < found.low < found.estimate < found.high
    # e47b56ee, a frontier trial, writes about twice the base policy's non-words on the same prompts
    trial = pd.read_parquet(FIXTURE / "samples" / "e47b56ee.parquet")
    paired = paired_difference(trial, base, "fluency/nonword_rate", ("trial", "base"), resamples=RESAMPLES)
    assert paired.difference.estimate > 0.05 and paired.verdict == "trial higher"
    textless = metric_intervals(base.drop(columns="completion"), resamples=RESAMPLES)
    assert not set(WORD_METRICS) & set(textless) and "diversity/token_entropy" in textless
    out, _ = report
    about = (out / "report.md").read_text().split("## About the intervals", 1)[1]
    pooled = "except diversity/token_entropy, diversity/distinct_1, diversity/distinct_2, diversity/word_entropy, "
    assert pooled in about  # estimate ± z × SE for word entropy too
    assert "fluency/nonword_rate" in about and "without completion text" not in about


def test_what_to_pick_names_the_best_trials_with_their_intervals_and_the_gain_over_the_base(report):
    out, _ = report
    pick = (out / "report.md").read_text().split("## What to pick", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in pick.splitlines() if line]
    results = pd.read_parquet(FIXTURE / "results.parquet")
    ok = results[results["status"] == "ok"]
    base = json.loads((FIXTURE / "base" / "metrics.json").read_text())["metrics"]
    number = r"(-?[\d.]+(?:e[-+]?\d+)?)"

    def stated(line: str, what: str) -> tuple[float, float, float]:
        found = re.search(rf"{re.escape(what)} {number} \[{number}, {number}\]", line)
        assert found, (what, line)
        return tuple(float(v) for v in found.groups())

    assert lines[0].startswith(f"The frontier holds {int(ok['pareto'].sum())} of {len(ok)} finished trials.")
    for metric in ("reward/mean", "diversity/token_entropy"):
        estimate, low, high = stated(lines[0], metric)
        assert estimate == pytest.approx(base[metric], rel=1e-3) and low < estimate < high, metric
    best = ok.loc[ok["reward/mean"].idxmax()]
    widest = ok.loc[ok["diversity/token_entropy"].idxmax()]  # the most diverse trial is always on the frontier
    for title, row in (("Highest reward:", best), ("Highest diversity on the frontier:", widest)):
        (line,) = [line for line in lines if line.startswith(f"- {title} ")]
        assert f"**{row['divergence']}**" in line and f"(trial `{row['trial']}`)" in line, line
        for metric in ("reward/mean", "diversity/token_entropy"):
            estimate, low, high = stated(line, metric)
            assert estimate == pytest.approx(row[metric], rel=1e-3) and low < estimate < high, (title, metric)
    label = f"{best['divergence']} β={best['beta']:.3g} lr={best['learning_rate']:.2g}"  # compared: lr in the label
    exploratory = f"- {label} vs base, exploratory (the search's prompts, which chose them; no verdict): "
    (versus,) = [line for line in lines if line.startswith(exploratory)]
    difference, low, high = stated(versus, "reward/mean difference")
    assert difference == pytest.approx(best["reward/mean"] - base["reward/mean"], abs=2e-3)
    assert 0 < low < difference < high and versus.endswith("over 40 shared prompts.") and "higher" not in versus


def test_paired_comparison_pairs_prompts_and_says_no_difference_when_the_interval_covers_zero():
    rng = np.random.default_rng(1)
    a = _samples(rng, 40, 2, 0.0, prompt_sd=2.0)
    shifted = a.assign(reward=a["reward"] + 0.3 + rng.normal(0, 0.05, len(a)))
    paired = paired_difference(shifted, a, names=("shifted", "a"), resamples=RESAMPLES)
    assert paired.difference.estimate == pytest.approx(0.3, abs=0.03)
    assert paired.difference.low > 0 and paired.verdict == "shifted higher" and paired.prompts == 40
    # unpaired, the prompt effect (sd 2) would swamp 0.3: the interval is narrow only because prompts are matched
    assert paired.difference.high - paired.difference.low < 0.1
    noisy = a.assign(reward=a["reward"] + rng.normal(0, 0.5, len(a)))
    same = paired_difference(noisy, a, names=("noisy", "a"), resamples=RESAMPLES)
    assert same.difference.low < 0 < same.difference.high and same.verdict == "no difference at 95%"
    other = a.assign(prompt=a["prompt"] + " (another)")
    with pytest.raises(ValueError, match="different prompt texts"):
        paired_difference(other, a, resamples=RESAMPLES)


def test_table_has_a_row_per_divergence_frontier_point_and_compares_loss_types(tmp_path):
    out = tmp_path / "exp"
    shutil.copytree(FIXTURE, out)
    results = pd.read_parquet(out / "results.parquet")
    results.loc[results["trial"].isin(["e47b56ee", "bbb2624f"]), "loss_type"] = "hinge"
    results.loc[results["trial"] == "aa3b8112", ["status", "reason"]] = ("error", "FloatingPointError: injected")
    results.to_parquet(out / "results.parquet")
    experiment = load_experiment(out)
    table = divergence_table(experiment, {})
    assert table.iloc[0]["divergence"] == "base (SFT)"
    groups = set(zip(table["divergence"][1:], table["loss"][1:], strict=True))
    assert ("js_divergence", "hinge") in groups and ("js_divergence", "sigmoid") in groups
    assert "aa3b8112" not in set(table["trial"])
    write_report(out, resamples=100)
    text = (out / "report.md").read_text()
    hinge, sigmoid = r"js_divergence β=\S+ lr=\S+ hinge", r"js_divergence β=\S+ lr=\S+ sigmoid"
    assert re.search(rf"\| {hinge} \| {sigmoid} \| reward/mean \|", text) or re.search(
        rf"\| {sigmoid} \| {hinge} \| reward/mean \|", text
    )
    assert "| aa3b8112 | 3 | error |" in text


def test_compare_puts_two_experiments_on_one_plot(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(FIXTURE, other)
    results = pd.read_parquet(other / "results.parquet")
    results["reward/mean"] -= 0.2
    results.to_parquet(other / "results.parquet")
    rng = np.random.default_rng(2)
    for path in (other / "samples").glob("*.parquet"):  # B's samples score 0.2 lower too, with some noise
        samples = pd.read_parquet(path)
        samples["reward"] -= 0.2 + rng.normal(0.0, 0.05, len(samples))
        samples.to_parquet(path)
    written = write_comparison(FIXTURE, other, tmp_path / "compare", names=("A", "B"))
    assert {"compare.png", "compare_hypervolume.png", "compare.md", "compare.html"} == set(written)
    with Image.open(written["compare.png"]) as image:
        assert image.size == (900, 600)
    text = written["compare.md"].read_text()
    volumes = {}
    for name in ("A", "B"):
        found = re.search(rf"\| {name} \| 10 \| 10 \| 5 \| ([^ |]+) \|", text)
        assert found, text
        volumes[name] = float(found.group(1))
    base = json.loads((FIXTURE / "base" / "metrics.json").read_text())["metrics"]
    reference = (base["reward/mean"], 0.5 * base["diversity/token_entropy"])  # both share the fixture's base
    points = pd.read_parquet(FIXTURE / "results.parquet")[["reward/mean", "diversity/token_entropy"]].to_numpy()
    assert volumes["A"] == pytest.approx(_dominated_area(points, reference), rel=1e-3)
    assert volumes["B"] == pytest.approx(_dominated_area(points - [0.2, 0.0], reference), rel=1e-3)
    assert volumes["B"] < volumes["A"] - 0.1  # the worse experiment has the lower hypervolume
    paired = re.search(r"\| A \| B \| reward/mean \| ([^ |]+) \| \[([^ ,]+), ([^ \]]+)\] \| 40 \| A higher \|", text)
    assert paired, text
    difference, low, high = (float(v) for v in paired.groups())
    assert difference == pytest.approx(0.2, abs=0.03) and 0 < low < difference < high


def test_report_script_names_a_directory_that_is_no_sweep(tmp_path):
    from analysis.report import main

    with pytest.raises(SystemExit, match="has no sweep.json"):
        main([str(tmp_path)])


def test_a_failing_report_does_not_fail_the_sweep(tmp_path, monkeypatch, capsys):
    import alignray.report
    from alignray.sweep import driver

    def broken(directory):
        raise RuntimeError("no plots today")

    monkeypatch.setattr(alignray.report, "write_report", broken)
    driver._report(tmp_path)
    said = capsys.readouterr().out
    assert "report failed (RuntimeError: no plots today)" in said and f"analysis/report.py {tmp_path}" in said


# --- the package's seams: each figure's record, the documents' templates, the modules' imports ------------------


def _frontier_trials(rows: pd.DataFrame) -> set[str]:
    return set(rows["trial"][pareto_mask(rows[["reward/mean", "diversity/token_entropy"]].to_numpy())])


def _with_an_error(tmp_path: Path, trial: str = "aa3b8112") -> Path:
    out = tmp_path / "exp"
    shutil.copytree(FIXTURE, out)
    results = pd.read_parquet(out / "results.parquet")
    results.loc[results["trial"] == trial, ["status", "reason"]] = ("error", "FloatingPointError: injected")
    results.to_parquet(out / "results.parquet")
    return out


def test_pareto_record_holds_the_frontier_pareto_mask_computes_apart_from_the_other_trials():
    experiment = load_experiment(FIXTURE)
    ok = experiment.finished
    info = pareto_info(experiment)
    assert set(info.frontier.trials) == _frontier_trials(ok) and 2 <= len(info.frontier.trials) < len(ok)
    assert list(info.frontier.x) == sorted(info.frontier.x)  # the frontier line runs left to right
    for trial, x, y in zip(info.frontier.trials, info.frontier.x, info.frontier.y, strict=True):
        row = ok[ok["trial"] == trial].iloc[0]
        assert (x, y) == (row["diversity/token_entropy"], row["reward/mean"])
    assert len(info.frontier.labels) == len(info.frontier.trials)
    assert all(text.startswith("β=") for text in info.frontier.labels)
    every = [trial for group in info.groups for trial in group.trials.trials]
    assert sorted(every) == sorted(ok["trial"])  # every finished trial once, marked by its divergence
    for group in info.groups:
        rows = ok[ok["divergence"] == group.name]
        assert set(group.trials.trials) == set(rows["trial"])
        assert set(group.frontier.trials) == _frontier_trials(rows)  # each divergence's own frontier
    assert info.base == (experiment.base["diversity/token_entropy"], experiment.base["reward/mean"])
    assert info.error_bars == {}
    first, second = info.frontier.trials[:2]
    known = Interval(6.3, 6.2, 6.4)
    intervals = {
        first: {"reward/mean": Interval(1.0, 0.9, 1.1), "diversity/token_entropy": known},
        second: {"reward/mean": Interval(1.0, float("nan"), float("nan")), "diversity/token_entropy": known},
    }
    assert set(pareto_info(experiment, intervals).error_bars) == {first}  # only finite intervals get a bar


def test_histogram_record_sets_the_selected_frontier_models_over_the_base_policy():
    experiment = load_experiment(FIXTURE)
    front = experiment.frontier
    loaded = {trial: experiment.samples(trial) for trial in ["base", *front["trial"]]}
    info = histogram_info(experiment, loaded)
    assert len(front) == 5 and len(info.panels) == 3  # highest reward, one between, highest diversity
    highest_reward, most_diverse = front.iloc[0], front.loc[front["diversity/token_entropy"].idxmax()]
    assert info.panels[0].label.startswith(f"{highest_reward['divergence']} β={highest_reward['beta']:.3g} ")
    assert info.panels[-1].label.startswith(f"{most_diverse['divergence']} β={most_diverse['beta']:.3g} ")
    chosen = [front.iloc[0], front.iloc[2], front.iloc[-1]]
    for panel, row in zip(info.panels, chosen, strict=True):
        rewards = loaded[row["trial"]]["reward"].to_numpy()
        assert np.array_equal(panel.rewards, rewards) and panel.mean == pytest.approx(rewards.mean())
    assert info.base is not None and np.array_equal(info.base.rewards, loaded["base"]["reward"].to_numpy())
    every = np.concatenate([info.base.rewards, *(panel.rewards for panel in info.panels)])
    assert len(info.bins) == 31 and info.bins[0] == every.min() and info.bins[-1] == every.max()
    only_base = histogram_info(experiment, {"base": loaded["base"]})
    assert only_base.panels == () and only_base.base is not None
    assert histogram_info(experiment, {}).base is None
    assert len(draw_histograms(only_base).axes) == 1  # no frontier samples: one panel, the base policy's


def test_hypervolume_record_is_the_dominated_area_after_each_trial_flat_at_an_errored_one(tmp_path):
    experiment = load_experiment(_with_an_error(tmp_path))
    (curve,) = hypervolume_info({"A": experiment}).curves
    order = experiment.results.sort_values("index")
    assert curve.name == "A" and list(curve.steps) == list(range(1, 11))
    assert list(curve.errored) == list(order["trial"] == "aa3b8112") and curve.errored.sum() == 1
    reference = tuple(experiment.summary["reference_point"])
    finished = order["status"].to_numpy() == "ok"
    points = order[["reward/mean", "diversity/token_entropy"]].to_numpy()
    for step in range(1, 11):
        assert curve.values[step - 1] == pytest.approx(_dominated_area(points[:step][finished[:step]], reference))
    errored = int(np.flatnonzero(curve.errored)[0])
    assert curve.values[errored] == curve.values[errored - 1]
    common = (0.0, 0.0)
    (against,) = hypervolume_info({"A": experiment}, common).curves
    assert against.values[-1] == pytest.approx(_dominated_area(points[finished], common))


def test_interactive_and_comparison_records_show_each_experiments_trials_and_frontier(tmp_path):
    a = load_experiment(FIXTURE)
    b = load_experiment(_with_an_error(tmp_path, trial="e47b56ee"))  # a frontier trial errored: B's frontier moves
    info = interactive_info({"A": a, "B": b})
    for name, experiment in (("A", a), ("B", b)):
        traces = [trace for trace in info.traces if trace.name.startswith(f"{name}: ")]
        trials = [trace for trace in traces if trace.kind == "trials"]
        hovered = [re.match(r"trial: (\w+)<br>", text).group(1) for trace in trials for text in trace.hover]
        assert sorted(hovered) == sorted(experiment.finished["trial"])
        assert sum(len(trace.x) for trace in trials) == len(experiment.finished)
        (front,) = [trace for trace in traces if trace.kind == "frontier"]
        frontier = experiment.frontier.sort_values("diversity/token_entropy")
        assert list(front.x) == list(frontier["diversity/token_entropy"])
        assert list(front.y) == list(frontier["reward/mean"])
        (base,) = [trace for trace in traces if trace.kind == "base"]
        assert (base.x[0], base.y[0]) == (experiment.base["diversity/token_entropy"], experiment.base["reward/mean"])
    dashes = [trace.style for trace in info.traces if trace.kind == "frontier"]
    assert dashes == [0, 1]  # one line style per experiment
    assert all(not trace.name.startswith("A: ") for trace in interactive_info({"A": a}).traces)

    compared = comparison_info({"A": a, "B": b})
    assert [experiment.name for experiment in compared.experiments] == ["A", "B"]
    for experiment, loaded in zip(compared.experiments, (a, b), strict=True):
        assert sorted(experiment.trials.trials) == sorted(loaded.finished["trial"])
        assert set(experiment.frontier.trials) == _frontier_trials(loaded.finished)
        assert list(experiment.frontier.x) == sorted(experiment.frontier.x)
        assert all(text.startswith("js_divergence β=") for text in experiment.frontier.labels)
    assert "e47b56ee" in compared.experiments[0].frontier.trials
    assert "e47b56ee" not in compared.experiments[1].trials.trials


def test_markdown_template_writes_headings_tables_images_and_code_blocks():
    table = pd.DataFrame({"name": ["a|b", None], "text": ["one\ntwo", "three"], "count": [1, 2]})
    blocks = [("h1", "Title"), ("p", "some **bold** and `code`"), ("table", table), ("plotly", None),
              ("image", (Path("/somewhere/plot.png"), "a plot")), ("h2", "Code"), ("code", "x = 1"),
              ("table", pd.DataFrame())]  # fmt: skip
    assert render_markdown(blocks) == (
        "# Title\n\nsome **bold** and `code`\n\n"
        "| name | text | count |\n|---|---|---|\n| a\\|b | one two | 1 |\n|  | three | 2 |\n\n"
        "![a plot](plot.png)\n\n## Code\n\n```\nx = 1\n```\n\n|  |\n|\n"
    )


def test_html_template_escapes_text_everywhere_and_keeps_its_own_markup(tmp_path):
    image = tmp_path / "plot.png"
    image.write_bytes(b"\x89PNG not really")
    hostile = '<script>alert("x")</script>'
    blocks = [("h1", hostile), ("p", f"**{hostile}** and `{hostile}`"), ("table", pd.DataFrame({hostile: [hostile]})),
              ("image", (image, f'" onerror="{hostile}')), ("code", hostile)]  # fmt: skip
    page = render_html(blocks, title=hostile)
    assert "<script" not in page and 'onerror="' not in page
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert page.count(escaped) == 8  # title, heading, bold, code, column, cell, alt text, code block
    assert f"<p><strong>{escaped}</strong> and <code>{escaped}</code></p>" in page
    assert "data:image/png;base64," in page


def test_report_html_escapes_a_hostile_trial_label_and_completion(tmp_path):
    out = tmp_path / "exp"
    shutil.copytree(FIXTURE, out)
    samples = pd.read_parquet(out / "base" / "samples.parquet")
    samples.loc[samples["prompt_id"].idxmin(), "completion"] = '<script>alert("completion")</script>'
    samples.to_parquet(out / "base" / "samples.parquet")
    results = pd.read_parquet(out / "results.parquet")
    best = results.loc[results["reward/mean"].idxmax(), "trial"]
    results.loc[results["trial"] == best, "divergence"] = "<b onmouseover=alert(1)>kl</b>"
    results.to_parquet(out / "results.parquet")
    write_report(out, resamples=50)
    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "<b onmouseover" not in page  # nowhere, plotly's data included
    assert "&lt;script&gt;alert(&#34;completion&#34;)&lt;/script&gt;" in page  # the samples table
    label = "&lt;b onmouseover=alert(1)&gt;kl&lt;/b&gt;"
    assert f"<p>- Highest reward: <strong>{label}</strong>" in page and f"<td>{label}</td>" in page
    assert "<script>alert" in (out / "report.md").read_text()  # Markdown is text: it stays as written


def test_report_modules_import_each_other_without_a_cycle_and_not_the_config_or_the_driver():
    package = Path(__file__).parent.parent / "alignray" / "report"
    imports: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports too
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        imports[path.stem] = found
        assert not found & {"alignray.config", "alignray.sweep.driver"}, path.name
    modules = {m for m in imports if m != "__init__"}
    assert {"experiment", "stats", "figures", "document"} <= modules
    graph = {m: {i.removeprefix("alignray.report.") for i in imports[m]} & modules for m in modules}
    done: list[str] = []
    while len(done) < len(graph):  # peel off the modules whose imports are all done; a cycle leaves some behind
        ready = [m for m in graph if m not in done and graph[m] <= set(done)]
        assert ready, {m: graph[m] - set(done) for m in graph if m not in done}
        done += ready


def test_the_live_views_name_the_sweeps_own_storage(report, tmp_path):
    out, _ = report
    text = (out / "report.md").read_text()
    assert f"`optuna-dashboard sqlite:///{out / 'study.db'}`" in text  # the default: the experiment's SQLite file
    other = tmp_path / "exp"
    shutil.copytree(FIXTURE, other)
    record = json.loads((other / "sweep.json").read_text())
    record["config"].update(storage="postgresql://sweeper@db.internal/studies", tune_storage="s3://bucket/tune",
                            storage_password_env="ALIGNRAY_STORAGE_PASSWORD")  # fmt: skip
    (other / "sweep.json").write_text(json.dumps(record))
    text = (write_report(other, resamples=RESAMPLES)["report.md"]).read_text()
    assert "`optuna-dashboard postgresql://sweeper@db.internal/studies`" in text and "study.db" not in text
    assert "its password is in $ALIGNRAY_STORAGE_PASSWORD" in text
    assert "`tensorboard --logdir s3://bucket/tune`" in text


# --- feasibility, the reward–KL panel, both objectives of each pick, the reward-hacking watch ---------------------

BEST = "6895fda7"  # the fixture's highest reward (and below the base policy in diversity)
HIGH_KL = ("89eeced1", "03df11ad", "dd903de4")  # the fixture's three highest kl/ref: 25.3, 18.8, 15.6


def _constrained(tmp_path: Path, max_kl: float = 15.0, name: str = "constrained") -> Path:
    """A copy of the fixture recorded as a sweep with constraints ``kl/ref ≤ max_kl`` and ``fluency/nonword_rate ≤
    0.15`` (the base policy's 0.1 + 0.05): every trial's non-word rate 0.12 except the highest-reward one's, 0.3, so
    it breaks the fluency bound; ``pareto`` recomputed among feasible trials, as the sweep does."""
    out = tmp_path / name
    shutil.copytree(FIXTURE, out)
    results = pd.read_parquet(out / "results.parquet")
    results["fluency/nonword_rate"] = np.where(results["trial"] == BEST, 0.3, 0.12)
    bounds = {"kl/ref": max_kl, "fluency/nonword_rate": 0.15}
    for metric, bound in bounds.items():
        results[f"constraint/{metric}"] = results[metric] - bound
    broken = [[f"{m} {row[m]:.3g} > {b:g}" for m, b in bounds.items() if row[f"constraint/{m}"] > 0]
              for _, row in results.iterrows()]  # fmt: skip
    results["feasible"] = (results["status"] == "ok") & np.array([not b for b in broken])
    results["violations"] = ["; ".join(b) or None for b in broken]
    points = results[["reward/mean", "diversity/token_entropy"]].to_numpy()
    pareto = np.zeros(len(results), dtype=bool)
    pareto[results["feasible"].to_numpy()] = pareto_mask(points[results["feasible"].to_numpy()])
    results["pareto"] = pareto
    results.to_parquet(out / "results.parquet")
    record = json.loads((out / "sweep.json").read_text())
    record["config"].update(max_kl=max_kl, max_nonword_increase=0.05)
    record["summary"].update(constraints=bounds, feasible=int(results["feasible"].sum()))
    (out / "sweep.json").write_text(json.dumps(record))
    base = json.loads((out / "base" / "metrics.json").read_text())
    base["metrics"]["fluency/nonword_rate"] = 0.1
    (out / "base" / "metrics.json").write_text(json.dumps(base))
    return out


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def test_infeasible_trials_are_left_out_of_the_frontier_and_the_hypervolume(tmp_path):
    experiment = load_experiment(_constrained(tmp_path))
    infeasible = {BEST, *HIGH_KL}
    assert set(experiment.finished["trial"]) - set(experiment.feasible["trial"]) == infeasible
    assert experiment.constraints == {"kl/ref": 15.0, "fluency/nonword_rate": 0.15}
    feasible = experiment.feasible
    assert set(experiment.frontier["trial"]) == _frontier_trials(feasible) == {"e47b56ee", "6a844b3c"}
    assert BEST in _frontier_trials(experiment.finished)  # without the constraints it would be the top pick
    assert experiment.frontier.iloc[0]["trial"] == "e47b56ee"
    reference = reference_point(experiment)
    _, curve = hypervolume_history(experiment, reference)
    points = feasible[["reward/mean", "diversity/token_entropy"]].to_numpy()
    everything = experiment.finished[["reward/mean", "diversity/token_entropy"]].to_numpy()
    assert curve[-1] == pytest.approx(_dominated_area(points, reference))
    assert curve[-1] < _dominated_area(everything, reference) - 0.01
    # a sweep recorded before constraints: every finished trial counts
    old = load_experiment(FIXTURE)
    assert old.constraints == {} and len(old.feasible) == len(old.finished) == 10


def test_pareto_figure_draws_infeasible_trials_hollow_with_a_legend_entry(tmp_path):
    experiment = load_experiment(_constrained(tmp_path))
    info = pareto_info(experiment)
    assert {t for group in info.groups for t in group.trials.infeasible} == {BEST, *HIGH_KL}
    assert sorted(t for group in info.groups for t in group.trials.trials) == sorted(experiment.finished["trial"])
    assert not set(info.frontier.trials) & {BEST, *HIGH_KL}
    for group in info.groups:
        assert not set(group.frontier.trials) & {BEST, *HIGH_KL}  # each divergence's own frontier: feasible only
    figure = draw_pareto(info)
    left = figure.axes[0]
    hollow = [line for line in left.lines if line.get_gid() == "infeasible"]
    drawn = {(x, y) for line in hollow for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)}
    rows = experiment.finished[experiment.finished["trial"].isin({BEST, *HIGH_KL})]
    assert drawn == set(zip(rows["diversity/token_entropy"], rows["reward/mean"], strict=True))
    assert hollow and all(line.get_markerfacecolor() == "none" for line in hollow)
    filled = [line for line in left.lines if line.get_gid() is None and line.get_linestyle() == "None"
              and line.get_label() in {group.name for group in info.groups}]  # fmt: skip
    assert all(line.get_markerfacecolor() != "none" for line in filled)
    assert HOLLOW in [text.get_text() for text in left.get_legend().get_texts()]
    (line,) = [line for line in left.lines if line.get_gid() == "frontier"]
    assert set(line.get_xdata()) == set(experiment.frontier["diversity/token_entropy"])
    plain = pareto_figure(load_experiment(FIXTURE))  # no constraints: nothing hollow, no hollow legend entry
    assert not [line for line in plain.axes[0].lines if line.get_gid() == "infeasible"]
    assert HOLLOW not in [text.get_text() for text in plain.axes[0].get_legend().get_texts()]


def test_interactive_frontier_draws_infeasible_trials_open_and_names_their_violation_on_hover(tmp_path):
    experiment = load_experiment(_constrained(tmp_path))
    info = interactive_info({"A": experiment})
    seen = {}
    for trace in info.traces:
        if trace.kind != "trials":
            continue
        for hover, feasible, symbol in zip(trace.hover, trace.feasible, trace.symbols, strict=True):
            trial = re.match(r"trial: (\w+)<br>", hover).group(1)
            seen[trial] = (feasible, symbol, hover)
    assert {t for t, (feasible, _, _) in seen.items() if not feasible} == {BEST, *HIGH_KL}
    assert all(symbol.endswith("-open") != feasible for feasible, symbol, _ in seen.values())
    assert "infeasible, violates: kl/ref 25.3 &gt; 15" in seen["89eeced1"][2]
    assert "infeasible, violates: fluency/nonword_rate 0.3 &gt; 0.15" in seen[BEST][2]
    assert "violates" not in seen["e47b56ee"][2]
    (front,) = [trace for trace in info.traces if trace.kind == "frontier"]
    assert set(front.x) == set(experiment.frontier["diversity/token_entropy"])
    figure = draw_interactive(info)
    assert HOLLOW in [trace.name for trace in figure.data]
    marked = [s for trace in figure.data if trace.name == "js_divergence" for s in trace.marker.symbol]
    assert marked.count("square-open") == 4
    plain = draw_interactive(interactive_info({"A": load_experiment(FIXTURE)}))
    assert HOLLOW not in [trace.name for trace in plain.data]


def test_reward_kl_record_holds_every_finished_trial_the_base_at_kl_zero_and_the_budget(tmp_path):
    experiment = load_experiment(_constrained(tmp_path))
    info = reward_kl_info(experiment)
    assert (info.kl, info.y.metric, info.budget) == ("kl/ref", "reward/mean", 15.0)
    assert info.base == (0.0, experiment.base["reward/mean"])
    ok = experiment.finished.set_index("trial")
    every = [t for group in info.groups for t in group.trials.trials]
    assert sorted(every) == sorted(ok.index)
    for group in info.groups:
        for trial, x, y in zip(group.trials.trials, group.trials.x, group.trials.y, strict=True):
            assert (x, y) == (ok.loc[trial, "kl/ref"], ok.loc[trial, "reward/mean"])
    assert {t for group in info.groups for t in group.trials.infeasible} == {BEST, *HIGH_KL}
    figure = draw_reward_kl(info)
    ax = figure.axes[0]
    (budget,) = [line for line in ax.lines if line.get_gid() == "budget"]
    assert list(budget.get_xdata()) == [15.0, 15.0]
    hollow = [line for line in ax.lines if line.get_gid() == "infeasible"]
    assert hollow and all(line.get_markerfacecolor() == "none" for line in hollow)
    assert sorted(x for line in hollow for x in line.get_xdata()) == sorted(ok.loc[[BEST, *HIGH_KL], "kl/ref"])
    assert HOLLOW in [text.get_text() for text in ax.get_legend().get_texts()]
    plain = reward_kl_info(load_experiment(FIXTURE))  # no constraints: no budget, every trial filled
    assert plain.budget is None and all(group.trials.filled.all() for group in plain.groups)
    assert not [line for line in draw_reward_kl(plain).axes[0].lines if line.get_gid() == "budget"]


def test_report_states_the_constraints_and_picks_only_feasible_trials(tmp_path):
    out = _constrained(tmp_path)
    written = write_report(out, resamples=100)
    assert "reward_kl.png" in written
    text = written["report.md"].read_text()
    assert ("Constraints: `kl/ref` ≤ 15 (max_kl), `fluency/nonword_rate` ≤ 0.15 (the base policy's 0.1 + "
            "max_nonword_increase 0.05). 6 of 10 finished trials are feasible.") in text  # fmt: skip
    assert "![reward/mean vs KL to the reference policy](reward_kl.png)" in text
    assert "the KL budget (15) is the dashed line" in text
    pick = _section(text, "What to pick")
    assert "(trial `e47b56ee`)" in pick.split("- Highest reward: ", 1)[1].splitlines()[0]
    picks = "\n".join(line for line in pick.splitlines() if not line.startswith("- Left out by the constraints"))
    assert "js_divergence β=0.0887" not in picks and BEST not in picks  # the infeasible best reward is no pick
    assert not set(HIGH_KL) & set(re.findall(r"`(\w{8})`", pick))
    paired = _section(text, "Paired comparisons")
    assert "β=0.0887" not in paired and "e47b56ee" not in paired and "js_divergence β=0.274" in paired
    experiment = load_experiment(out)
    reference = reference_point(experiment)
    volume = _dominated_area(experiment.feasible[["reward/mean", "diversity/token_entropy"]].to_numpy(), reference)
    found = re.search(r"Hypervolume ([\d.]+) against", text)
    assert float(found.group(1)) == pytest.approx(volume, rel=1e-3) and "Infeasible trials add nothing" in text
    table = _section(text, "Every trial")
    assert "| feasible | violations |" in table
    assert re.search(r"\| 89eeced1 \| 9 \| ok \|.*\| False \| kl/ref 25.3 > 15 \|", table)
    assert re.search(r"\| e47b56ee \| 4 \| ok \|.*\| True \|  \|", table)
    assert "No trial met the constraints" not in text
    assert "Constraints:" not in (write_report(_with_an_error(tmp_path), resamples=50)["report.md"]).read_text()


def test_a_sweep_where_no_trial_is_feasible_says_so_and_still_writes_everything(tmp_path):
    out = _constrained(tmp_path, max_kl=1.0)
    experiment = load_experiment(out)
    assert experiment.feasible.empty and experiment.frontier.empty and len(experiment.finished) == 10
    written = write_report(out, resamples=50)
    assert {"report.md", "report.html", "pareto.png", "reward_kl.png", "hypervolume.png"} <= set(written)
    assert all(path.is_file() for path in written.values())
    text = written["report.md"].read_text()
    pick = _section(text, "What to pick").strip()
    assert pick.startswith("**No trial met the constraints (kl/ref ≤ 1, fluency/nonword_rate ≤ 0.15): there is no "
                           "frontier to recommend.**")  # fmt: skip
    assert "0 of 10 finished trials are feasible" in text and "Hypervolume 0 against" in text
    assert "No comparison: there is no feasible finished trial" in text
    assert pareto_info(experiment).frontier.trials == ()
    assert written["report.html"].read_text().count("data:image/png;base64,") >= 3


def test_each_pick_states_its_difference_from_the_base_in_both_objectives(report):
    out, _ = report
    pick = _section((out / "report.md").read_text(), "What to pick")
    base = pd.read_parquet(FIXTURE / "base" / "samples.parquet")
    number = r"(-?[\d.]+(?:e[-+]?\d+)?)"
    for title, trial in (("Highest reward:", BEST), ("Highest diversity on the frontier:", "dd903de4")):
        (line,) = [line for line in pick.splitlines() if line.startswith(f"- {title} ")]
        assert f"(trial `{trial}`)" in line
        versus = line.split("Against the base policy: ", 1)[1]
        samples = pd.read_parquet(FIXTURE / "samples" / f"{trial}.parquet")
        for metric in ("reward/mean", "diversity/token_entropy"):
            found = re.search(rf"{re.escape(metric)} difference {number} \[{number}, {number}\]", versus)
            assert found, (metric, versus)
            difference, low, high = (float(v) for v in found.groups())
            expected = metrics_from_samples(samples)[metric] - metrics_from_samples(base)[metric]
            assert difference == pytest.approx(expected, rel=1e-3, abs=1e-4) and low < difference < high, metric
        # not confirmed: the prompts that chose the pick measure it, so each difference is exploratory, no verdict,
        # even where the interval lies below 0 (the top reward is 0.18 nats less diverse than the base)
        assert versus.count("(exploratory: the search's prompts)") == 2 and "worse" not in versus
        if trial == BEST:
            assert high < 0


def test_watch_finds_a_token_planted_in_a_frontier_models_samples(tmp_path):
    assert tokens("Great/10, isn't it?") == ["great", "/10", ",", "isn't", "it", "?"]
    out = _constrained(tmp_path, max_kl=100.0)  # only the highest-reward trial is infeasible
    experiment = load_experiment(out)
    planted = "e47b56ee"
    once = next(trial for trial in experiment.frontier["trial"] if trial != planted)
    samples = pd.read_parquet(out / "samples" / f"{planted}.parquet")
    every_third = np.arange(len(samples)) % 3 == 0
    samples.loc[every_third, "completion"] = [  # "/10" glued to each text's own last word, as the reward model likes
        text.rstrip() + "/10 zzqx" for text in samples.loc[every_third, "completion"]
    ]
    samples.to_parquet(out / "samples" / f"{planted}.parquet")
    other = pd.read_parquet(out / "samples" / f"{once}.parquet")
    other.loc[0, "completion"] += " qqvv"  # in one text only: below min_texts
    other.loc[[1, 2], "completion"] += " wwyy"  # in two
    other.to_parquet(out / "samples" / f"{once}.parquet")
    loaded = {trial: experiment.samples(trial) for trial in ["base", *experiment.frontier["trial"]]}
    watches = {watch.trial: watch for watch in watch_info(experiment, loaded)}
    assert set(watches) == set(experiment.frontier["trial"]) and BEST not in watches
    top = watches[planted].rises[:3]
    assert {rise.ngram for rise in top} == {"/10", "zzqx", "/10 zzqx"}, watches[planted].rises
    for rise in top:
        assert rise.share == pytest.approx(every_third.mean()) and rise.base_share == 0
        assert rise.texts == every_third.sum()
    assert len(watches[planted].rises) == 5
    assert all(r.rise > 0 and r.texts >= 2 for w in watches.values() for r in w.rises)
    every = {r.ngram for w in watch_info(experiment, loaded, top=100_000) if w.trial == once for r in w.rises}
    assert "wwyy" in every and "qqvv" not in every
    assert not {"/10", "zzqx"} & {r.ngram for r in watches[once].rises}
    # the non-word rate rose by 0.02 (0.1 -> 0.12): within what every DPO trial adds, no warning
    assert not any(w.fluency_warning for w in watches.values())
    text = (write_report(out, resamples=50)["report.md"]).read_text()
    watch = _section(text, "Reward-hacking watch")
    assert re.search(r"\| (/10|zzqx) \| 34% \(27\) \| 0% \| \+34 pt \|", watch), watch
    assert "Reward rose together" not in watch
    results = pd.read_parquet(out / "results.parquet")
    results.loc[results["trial"] == planted, "fluency/nonword_rate"] = 0.14  # +0.04: the warning
    results.to_parquet(out / "results.parquet", index=False)
    text = (write_report(out, resamples=50)["report.md"]).read_text()
    assert "**Reward rose together with `fluency/nonword_rate`** (by more than 0.025) against" in text
    plain = watch_info(load_experiment(FIXTURE), {t: load_experiment(FIXTURE).samples(t) for t in ["base", planted]})
    assert not any(w.fluency_warning for w in plain)  # no non-word rate recorded: no sentence


def test_comparison_counts_feasible_trials_only(tmp_path):
    constrained = _constrained(tmp_path)
    written = write_comparison(FIXTURE, constrained, tmp_path / "compare", names=("A", "B"))
    text = written["compare.md"].read_text()
    found = re.search(r"\| B \| 10 \| 10 \| 2 \| ([^ |]+) \| js_divergence β=0.274 \| 6 \|", text)
    assert found, text
    experiment = load_experiment(constrained)
    base = experiment.base
    reference = (base["reward/mean"], 0.5 * base["diversity/token_entropy"])
    volume = _dominated_area(experiment.feasible[["reward/mean", "diversity/token_entropy"]].to_numpy(), reference)
    assert float(found.group(1)) == pytest.approx(volume, rel=1e-3)
    assert "| A | 10 | 10 | 5 |" in text and "B: js_divergence β=0.274." in text  # B's best feasible point, paired


# --- honest comparisons: divergences at matched KL, bootstrap p-values, Holm's correction ------------------------


def _matched(tmp_path: Path) -> Path:
    """A copy of the fixture where the divergences reach different KLs: alpha_divergence's one trial at kl/ref 3
    (the smallest largest-KL, so the band is kl/ref ≤ 3); js_divergence's highest-reward trial infeasible at kl/ref
    2, its second highest (e47b56ee) at 14, and two lower-reward trials in the band (bbb2624f 1.65, the better,
    and 6a844b3c 2.5); forward_kl's trials all above the band (4.27, 8.68)."""
    out = tmp_path / "matched"
    shutil.copytree(FIXTURE, out)
    results = pd.read_parquet(out / "results.parquet").set_index("trial")
    results.loc["bd1b3444", "kl/ref"] = 3.0
    results.loc["6a844b3c", "kl/ref"] = 2.5
    results.loc[BEST, "kl/ref"] = 2.0
    results["feasible"] = results.index != BEST
    results["violations"] = np.where(results.index == BEST, "fluency/nonword_rate 0.3 > 0.15", None)
    results.reset_index().to_parquet(out / "results.parquet")
    return out


def test_divergences_are_compared_by_their_best_feasible_trial_within_a_common_kl_band(tmp_path):
    out = _matched(tmp_path)
    experiment = load_experiment(out)
    matched = matched_kl(experiment)
    assert matched.band == 3.0
    assert {group: row["trial"] for group, row in matched.chosen.items()} == {
        ("alpha_divergence",): "bd1b3444",
        ("js_divergence",): "bbb2624f",  # not e47b56ee (highest feasible reward, kl/ref 14), not BEST (infeasible)
    }
    assert matched.excluded == {("forward_kl",): pytest.approx(4.269160)}
    feasible = experiment.feasible
    for (divergence,), row in matched.chosen.items():  # each is its divergence's best feasible trial in the band
        inside = feasible[(feasible["divergence"] == divergence) & (feasible["kl/ref"] <= matched.band)]
        assert row["reward/mean"] == inside["reward/mean"].max()
    text = write_report(out, resamples=100)["report.md"].read_text()
    paired = _section(text, "Paired comparisons")
    assert "compared under a common KL cap, kl/ref ≤ 3 nats" in paired
    assert ("Not comparable: forward_kl (every feasible trial lies above the band; its lowest kl/ref is 4.269)."
            in paired)  # fmt: skip
    rows = experiment.results.set_index("trial")

    def named(trial: str) -> str:  # divergence, β, α, lr
        row = rows.loc[trial]
        alpha = f" α={row['alpha']:.2g}" if pd.notna(row["alpha"]) else ""
        return f"{row['divergence']} β={row['beta']:.3g}{alpha} lr={row['learning_rate']:.2g}"

    assert named("bd1b3444") == "alpha_divergence β=0.343 α=0.31 lr=0.00052"
    for metric in ("reward/mean", "diversity/token_entropy"):
        assert f"| {named('bbb2624f')} | {named('bd1b3444')} | {metric} |" in paired
    table_rows = [line for line in paired.splitlines() if line.startswith("| ") and "| metric |" not in line]
    assert not [line for line in table_rows if "forward_kl" in line or named(BEST) in line]
    assert not [line for line in table_rows if f"| {named('e47b56ee')} | alpha_divergence" in line]


def test_the_comparisons_are_one_holm_corrected_family_and_the_verdict_reads_the_adjusted_p(report):
    out, _ = report
    paired = _section((out / "report.md").read_text(), "Paired comparisons")
    header, *lines = [line for line in paired.splitlines() if line.startswith("| ")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[-3:] == ["prompts", "p", "Holm p"] and "verdict" not in columns  # exploratory: no verdict
    assert "Exploratory" in paired and "no verdict" in paired
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    raw = [float(row[-2]) for row in cells]
    stated = [float(row[-1]) for row in cells]
    assert len(raw) >= 4 and f"Holm-adjusted over the {len(raw)} rows" in paired
    # the family, counted independently: every row of the table, no other. Holm's step-down by hand: the k-th
    # smallest p times (m - k + 1), made monotone, capped at 1; the smallest alone shows m is the rows' count
    m, order = len(raw), sorted(range(len(raw)), key=lambda i: raw[i])
    expected, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * raw[i]))
        expected[i] = running
    assert stated == pytest.approx(expected, rel=2e-3, abs=1e-3)
    assert stated[order[0]] == pytest.approx(min(1.0, m * raw[order[0]]), rel=2e-3, abs=1e-3)


def test_holm_adjusts_known_p_values_and_keeps_their_order():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, float("nan"), 0.01]) == pytest.approx([0.5, float("nan"), 0.02], nan_ok=True)  # m = 2
    p = np.random.default_rng(3).uniform(0, 0.2, 30)
    adjusted = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0) and np.all(adjusted >= p) and np.all(adjusted <= 1)
    interval = Interval(0.2, 0.01, 0.4)  # excludes 0 on its own
    alone = Paired("a", "b", "reward/mean", interval, 40, 0.95, p_value=0.03)
    assert alone.verdict == "a higher"
    family = holm_adjusted([alone, Paired("a", "c", "reward/mean", interval, 40, 0.95, p_value=0.04)])
    assert [c.adjusted_p for c in family] == pytest.approx([0.06, 0.06])
    assert [c.verdict for c in family] == ["no difference at 95% after Holm"] * 2


def test_bootstrap_p_value_is_small_for_a_clear_difference_and_one_for_identical_samples():
    assert bootstrap_p_value(np.array([0.1, 0.2, 0.3])) == 0.25  # no resample at or below 0: the floor 1/(3 + 1)
    assert bootstrap_p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == 0.5
    rng = np.random.default_rng(1)
    a = _samples(rng, 40, 2, 0.0, prompt_sd=2.0)
    shifted = a.assign(reward=a["reward"] + 0.3 + rng.normal(0, 0.05, len(a)))
    clear = paired_difference(shifted, a, names=("shifted", "a"), resamples=RESAMPLES)
    assert clear.p_value == pytest.approx(1 / (RESAMPLES + 1))
    assert paired_difference(a, a, resamples=RESAMPLES).p_value == 1.0
    noisy = a.assign(reward=a["reward"] + rng.normal(0, 0.5, len(a)))
    assert paired_difference(noisy, a, resamples=RESAMPLES).p_value > 0.2


def test_non_finite_resamples_are_dropped_and_counted_not_read_as_neither_side():
    # counted on neither side, two NaNs pushed p to the floor 1/(5 + 1); left out, the floor is 1/(3 + 1)
    assert bootstrap_p_value(np.array([np.nan, np.nan, 0.1, 0.2, 0.3])) == 0.25
    assert bootstrap_p_value(np.array([-0.1, np.nan, 0.1, 0.2])) == pytest.approx(2 / 3)
    assert np.isnan(bootstrap_p_value(np.array([np.nan, np.inf])))


@pytest.mark.parametrize("metric", ["reward/mean", "diversity/token_entropy"])
def test_a_paired_differences_interval_and_p_value_come_from_one_method_and_agree(metric):
    """p < 1 − confidence exactly when the interval excludes 0, for small, borderline and clear differences (the
    percentile interval and its p-value; for a pooled metric the normal interval and its p-value)."""
    rng = np.random.default_rng(7)
    a = _samples(rng, 30, 2, 0.0, prompt_sd=1.0)
    a["completion_ids"] = [list(rng.integers(0, 60, 8)) for _ in range(len(a))]
    agreed = []
    for shift in (0.0, 0.1, 0.2, 0.3, 0.5):
        b = a.assign(reward=a["reward"] + shift + rng.normal(0, 0.6, len(a)),
                     completion_ids=[list(rng.integers(0, 60 + int(shift * 40), 8)) for _ in range(len(a))])
        paired = paired_difference(b, a, metric, ("b", "a"), resamples=400)
        excludes = paired.difference.low > 0 or paired.difference.high < 0
        agreed.append((paired.p_value < 0.05) == excludes)
        assert paired.dropped == 0
    assert all(agreed)


def test_what_to_pick_names_the_higher_reward_trials_the_constraints_left_out(tmp_path):
    out = _constrained(tmp_path)
    pick = _section((write_report(out, resamples=50)["report.md"]).read_text(), "What to pick")
    left = [line for line in pick.splitlines() if line.startswith("- Left out by the constraints")]
    assert len(left) == 1 and f"`{BEST}`" in left[0] and "fluency/nonword_rate 0.3 > 0.15" in left[0], pick
    experiment = load_experiment(out)
    assert BEST not in set(experiment.frontier["trial"])  # left out of the picks themselves
    shutil.copytree(FIXTURE, tmp_path / "plain")
    plain = _section((write_report(tmp_path / "plain", resamples=50)["report.md"]).read_text(), "What to pick")
    assert "Left out by the constraints" not in plain  # no constraints: nobody is left out


# --- configurable objectives: reward against KL, KL minimised ------------------------------------------------------

REWARD_KL_FRONT = ("6895fda7", "bbb2624f")  # the fixture's reward–KL frontier: (1.07, 5.84 nats), (0.80, 1.65 nats)


def _reward_kl(tmp_path: Path) -> Path:
    """A copy of the fixture recorded as a sweep of reward/mean against kl/ref:min, its hypervolume reference the
    base policy's reward and kl/ref 15 (hv_diversity)."""
    out = tmp_path / "reward_kl"
    shutil.copytree(FIXTURE, out)
    record = json.loads((out / "sweep.json").read_text())
    config = {k: v for k, v in record["config"].items() if k not in ("reward_metric", "diversity_metric")}
    record["config"] = {**config, "objectives": ["reward/mean", "kl/ref:min"], "hv_diversity": 15.0}
    base = json.loads((out / "base" / "metrics.json").read_text())["metrics"]
    record["summary"]["reference_point"] = [base["reward/mean"], 15.0]
    (out / "sweep.json").write_text(json.dumps(record))
    return out


def test_an_experiment_recorded_before_objectives_maximises_its_reward_and_diversity_metrics():
    from alignray.sweep.objectives import Objective

    assert "diversity_metric" in json.loads((FIXTURE / "sweep.json").read_text())["config"]
    experiment = load_experiment(FIXTURE)
    assert experiment.objectives == (Objective("reward/mean", "max"), Objective("diversity/token_entropy", "max"))
    assert set(experiment.frontier["trial"]) == _frontier_trials(experiment.finished)


def test_a_reward_kl_sweep_keeps_the_low_kl_trials_and_its_report_says_lower_is_better(tmp_path):
    experiment = load_experiment(_reward_kl(tmp_path))
    ok = experiment.finished
    brute = {row["trial"] for _, row in ok.iterrows()
             if not any(o["reward/mean"] >= row["reward/mean"] and o["kl/ref"] <= row["kl/ref"]
                        and (o["reward/mean"], o["kl/ref"]) != (row["reward/mean"], row["kl/ref"])
                        for _, o in ok.iterrows())}  # fmt: skip
    assert brute == set(REWARD_KL_FRONT)
    assert tuple(experiment.frontier["trial"]) == REWARD_KL_FRONT  # the most reward first, the least KL last
    reference = reference_point(experiment)
    _, curve = hypervolume_history(experiment, reference)
    negated = ok[["reward/mean", "kl/ref"]].to_numpy() * [1, -1]
    assert curve[-1] == pytest.approx(_dominated_area(negated, (reference[0], -reference[1])))
    assert curve[-1] > 0
    assert pareto_info(experiment).x.title == "kl/ref (lower is better)"
    assert reward_kl_info(experiment).y.title == "reward/mean (higher is better)"

    text = write_report(experiment.directory, resamples=50)["report.md"].read_text()
    assert "objectives `reward/mean` (higher is better) and `kl/ref` (lower is better)" in text
    pick = _section(text, "What to pick")
    (least,) = [line for line in pick.splitlines() if line.startswith("- Lowest kl/ref on the frontier: ")]
    assert "(trial `bbb2624f`)" in least
    (best,) = [line for line in pick.splitlines() if line.startswith("- Highest reward: ")]
    assert "(trial `6895fda7`)" in best  # 5.8 nats from the base policy, which sits at 0
    assert "kl/ref difference 5.8" in best and "(exploratory: the search's prompts)" in best  # not confirmed
    with pytest.raises(ValueError, match="the experiments have different objectives"):
        write_comparison(FIXTURE, experiment.directory, tmp_path / "compare")


# --- a confirmed experiment -------------------------------------------------------------------------------------


def _confirmed_experiment(out: Path, case: str = "confirmed") -> Path:
    """The fixture with a confirmation written as the driver writes it: the base policy on the confirmation prompts
    (its reward +0.4 there, so a report that used the search's base would show it), and each search-frontier trial
    at its search run (seed 0, +5 reward: never averaged in) and two fresh seeds (seeds 1 and 2, +0.1 and +0.2);
    ``case`` "failed": every seed failed; "infeasible": a KL budget none meets."""
    from alignray.sweep.confirm import confirmed_columns
    from alignray.sweep.constraints import Constraint
    from alignray.sweep.objectives import parse_objectives

    shutil.copytree(FIXTURE, out)
    record = json.loads((out / "sweep.json").read_text())
    objectives = parse_objectives((record["config"]["reward_metric"], record["config"]["diversity_metric"]))
    results = pd.read_parquet(out / "results.parquet")
    base = pd.read_parquet(out / "base" / "samples.parquet").assign(reward=lambda f: f["reward"] + 0.4)
    (out / "confirm" / "base").mkdir(parents=True)
    base.to_parquet(out / "confirm" / "base" / "samples.parquet")
    metrics = metrics_from_samples(base)
    (out / "confirm" / "base" / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    rows = [{"trial": "base", "seed": 0, "retrained": False, "status": "ok", **metrics}]
    for trial in results.loc[results["pareto"], "trial"]:
        for seed in (0, 1, 2):
            if case == "failed":
                rows.append({"trial": trial, "seed": seed, "retrained": seed > 0, "status": "error",
                             "reason": "FloatingPointError: nan"})  # fmt: skip
                continue
            samples = pd.read_parquet(out / "samples" / f"{trial}.parquet")
            samples["reward"] += 0.1 * seed if seed else 5.0
            (out / "confirm" / trial / f"seed-{seed}").mkdir(parents=True)
            samples.to_parquet(out / "confirm" / trial / f"seed-{seed}" / "samples.parquet")
            rows.append({"trial": trial, "seed": seed, "retrained": seed > 0, "status": "ok",
                         **metrics_from_samples(samples)})  # fmt: skip
    pd.DataFrame(rows).to_parquet(out / "confirmation.parquet")
    constraints = [Constraint("kl/ref", -1.0)] if case == "infeasible" else []
    confirmed = confirmed_columns(results, pd.DataFrame(rows), constraints, objectives)
    confirmed.assign(confirm=confirmed["pareto"]).to_parquet(out / "results.parquet")
    record["summary"]["confirmation"] = {"prompts": 40, "replicates": 1, "hypervolume": 0.0, "reference_point": [0, 0],
                                         "constraints": {c.metric: c.bound for c in constraints}, "failed_seeds": 0}
    (out / "sweep.json").write_text(json.dumps(record))
    return out


def test_a_confirmed_report_recommends_the_confirmed_figures_against_the_confirmation_base(tmp_path):
    out = _confirmed_experiment(tmp_path / "exp")
    experiment = load_experiment(out)
    searched = experiment.results[experiment.results["pareto"]]
    front = experiment.frontier
    assert set(front["trial"]) <= set(searched["trial"]) and experiment.confirmed is not None
    best = front.iloc[0]
    search_reward = searched.set_index("trial").loc[best["trial"], "reward/mean"]
    assert best["reward/mean"] == pytest.approx(search_reward + 0.15)  # the mean of the fresh seeds 1 and 2 alone
    assert best["search/reward/mean"] == pytest.approx(search_reward)
    text = write_report(out, resamples=RESAMPLES)["report.md"].read_text()
    pick = text.split("## What to pick", 1)[1].split("\n## ", 1)[0]
    assert "The confirmed frontier holds" in pick and f"(search: {num(search_reward)}" in pick
    (line,) = [line for line in pick.splitlines() if line.startswith("- Highest reward")]
    assert f"reward/mean {num(best['reward/mean'])} [" in line
    # against the base on the confirmation prompts (+0.4), not the search's base
    difference = float(re.search(r"reward/mean difference (-?[\d.e-]+) \[", line).group(1))
    assert difference == pytest.approx(best["reward/mean"] - experiment.confirmed_base["reward/mean"], abs=1e-3)
    assert "## Confirmation" in text and "| yes |" in text.split("## Confirmation", 1)[1].split("\n## ", 1)[0]
    # the watch reads the search's samples, so it states the search's figures
    loaded = {"base": experiment.samples("base"), best["trial"]: experiment.samples(best["trial"])}
    (watch,) = [w for w in watch_info(experiment, loaded) if w.trial == best["trial"]]
    assert watch.reward == pytest.approx((experiment.base["reward/mean"], search_reward))
    info = pareto_info(experiment)
    diversity = "diversity/token_entropy"  # the fixture's
    assert info.confirmed_base == (experiment.confirmed_base[diversity], experiment.confirmed_base["reward/mean"])
    assert len(info.shifts) == len(front)


@pytest.mark.parametrize("case", ["failed", "infeasible"])
def test_a_frontier_that_does_not_hold_up_on_confirmation_is_said_so(tmp_path, case):
    out = _confirmed_experiment(tmp_path / "exp", case)
    experiment = load_experiment(out)
    assert experiment.frontier.empty and experiment.confirmed is not None
    text = write_report(out, resamples=RESAMPLES)["report.md"].read_text()
    pick = text.split("## What to pick", 1)[1].split("\n## ", 1)[0]
    searched = int(experiment.results["pareto"].sum())
    said = f"None of the {searched} confirmed candidates (the search's feasible frontier and each divergence's best)"
    assert f"{said} held up on confirmation" in pick
    assert ("every seed failed" if case == "failed" else "kl/ref") in pick
    assert "No trial met the constraints" not in pick


# --- candidates beyond the trials: points along training, derived models ------------------------------------------

EXPO, HALF, SOUP = "6895fda7~x1.5", "6895fda7~x0.5", "bd1b3444+e47b56ee"
"""The derived candidates of ``_with_candidates``: the highest-reward trial extrapolated (ExPO; more reward than any
other candidate, so on the frontier) and interpolated towards the base, and a soup of two divergences."""
STEPS = (10, 20)


def _with_candidates(tmp_path: Path) -> Path:
    """A copy of the fixture recorded as a sweep with candidates: each trial's final model (kind "trial", step 30),
    two points along its training (steps 10 and 20: reward a third and two thirds of the way from the base policy's
    to the final model's, diversity above the final model's by 0.02 and 0.01, so dd903de4@10 is the most diverse
    candidate of all) and the derived ``EXPO``, ``HALF`` (base + λ·(6895fda7 − base)) and ``SOUP`` (the mean of its
    parents, infeasible); ``pareto`` recomputed over the feasible candidates, as the sweep does."""
    out = tmp_path / "candidates"
    shutil.copytree(FIXTURE, out)
    results = pd.read_parquet(out / "results.parquet")
    base = json.loads((out / "base" / "metrics.json").read_text())["metrics"]
    reward, diversity = "reward/mean", "diversity/token_entropy"
    results = results.assign(kind="trial", tune_trial=results["trial"], step=30.0, feasible=True, violations=None)
    rows = [results]
    for step in STEPS:
        share = step / 30
        points = results.assign(trial=results["trial"] + f"@{step}", kind="point", step=float(step))
        points[reward] = base[reward] + share * (results[reward] - base[reward])
        points[diversity] = results[diversity] + 0.03 - share * 0.03
        points["kl/ref"] = share**2 * results["kl/ref"]
        rows.append(points)
    by_id = results.set_index("trial")
    derived = []
    for lam, name in ((1.5, EXPO), (0.5, HALF)):
        parent = by_id.loc["6895fda7"]
        how = "interpolated towards the base" if lam < 1 else "extrapolated from the base (ExPO)"
        row = {**parent.to_dict(), "trial": name, "parents": ["6895fda7"], "weights": [lam], "lambda": lam,
               "recipe": f"base + {lam:g}·(6895fda7 − base): {how}", "kl/ref": lam**2 * parent["kl/ref"]}  # fmt: skip
        for metric in (reward, diversity):
            row[metric] = base[metric] + lam * (parent[metric] - base[metric])
        derived.append(row)
    a, b = by_id.loc["bd1b3444"], by_id.loc["e47b56ee"]
    soup = (a[[reward, diversity, "kl/ref"]] + b[[reward, diversity, "kl/ref"]]) / 2
    derived.append({**a.to_dict(), **soup.to_dict(), "trial": SOUP, "divergence": "soup", "beta": np.nan,
                    "alpha": np.nan, "learning_rate": np.nan, "parents": ["bd1b3444", "e47b56ee"],
                    "weights": [0.5, 0.5], "lambda": np.nan, "recipe": "soup: 0.5·bd1b3444 + 0.5·e47b56ee",
                    "feasible": False, "violations": "fluency/nonword_rate 0.3 > 0.15"})  # fmt: skip
    derived = pd.DataFrame(derived).assign(kind="derived", tune_trial=None, step=np.nan, index=np.nan)
    table = pd.concat([*rows, derived], ignore_index=True)
    ok = table["feasible"].to_numpy(dtype=bool)
    pareto = np.zeros(len(table), dtype=bool)
    pareto[ok] = pareto_mask(table.loc[ok, [reward, diversity]].to_numpy(dtype=float))
    table["pareto"] = pareto
    table.to_parquet(out / "results.parquet")
    record = json.loads((out / "sweep.json").read_text())
    record["summary"]["candidates"] = {"trial": 10, "point": 20, "derived": 3}
    (out / "sweep.json").write_text(json.dumps(record))
    return out


def test_an_experiment_recorded_before_candidates_holds_trials_only(report):
    experiment = load_experiment(FIXTURE)
    results = experiment.results
    assert "kind" not in pd.read_parquet(FIXTURE / "results.parquet").columns
    assert (results["kind"] == "trial").all() and list(results["tune_trial"]) == list(results["trial"])
    assert experiment.kinds == {"trial": 10, "point": 0, "derived": 0} and not experiment.has_candidates
    assert all(not group.paths and not group.points.trials for group in pareto_info(experiment).groups)
    assert pareto_info(experiment).derived.trials == ()
    out, _ = report
    text = (out / "report.md").read_text()
    assert "Candidates beyond the trials" not in text and "## Every trial" in text and "| kind |" not in text


def test_groups_hold_trained_candidates_and_the_frontier_every_kind(tmp_path):
    from alignray.report.experiment import group_rows, groups

    experiment = load_experiment(_with_candidates(tmp_path))
    assert experiment.kinds == {"trial": 10, "point": 20, "derived": 3}
    assert [group[0] for group in groups(experiment)] == ["forward_kl", "js_divergence", "alpha_divergence"]
    grouped = [t for group in groups(experiment) for t in group_rows(experiment, group)["trial"]]
    assert sorted(grouped) == sorted(experiment.trained["trial"]) and len(grouped) == 30  # no derived one, no soup
    front = set(experiment.frontier["trial"])
    assert front == _frontier_trials(experiment.feasible) and {EXPO, "dd903de4@10"} <= front
    assert experiment.frontier.iloc[0]["trial"] == EXPO  # the most reward of all: the top pick is derived
    assert all(row["trial"] != SOUP for row in matched_kl(experiment).chosen.values())


def test_hypervolume_counts_each_trial_with_its_points_then_the_derived_candidates(tmp_path):
    experiment = load_experiment(_with_candidates(tmp_path))
    (curve,) = hypervolume_info({"A": experiment}).curves
    assert list(curve.steps) == list(range(1, 12)) and curve.derived and not curve.errored.any()
    reference = tuple(experiment.summary["reference_point"])
    trained = experiment.trained
    for step, trial in enumerate(experiment.results.sort_values("index")["tune_trial"].dropna().unique(), 1):
        made = trained[trained["index"] <= trained.loc[trained["tune_trial"] == trial, "index"].iloc[0]]
        points = made[["reward/mean", "diversity/token_entropy"]].to_numpy()
        assert curve.values[step - 1] == pytest.approx(_dominated_area(points, reference)), trial
    every = experiment.feasible[["reward/mean", "diversity/token_entropy"]].to_numpy()
    assert curve.values[-1] == pytest.approx(_dominated_area(every, reference)) and curve.values[-1] > curve.values[-2]
    figure = hypervolume_figure({"A": experiment})
    (last,) = [line for line in figure.axes[0].lines if line.get_gid() == "derived"]
    assert list(last.get_xdata()) == [11]


def test_pareto_figure_draws_each_trials_path_in_step_order_and_derived_candidates_apart(tmp_path):
    experiment = load_experiment(_with_candidates(tmp_path))
    rows = experiment.results.set_index("trial")
    info = pareto_info(experiment)
    paths = {path.trial: path for group in info.groups for path in group.paths}
    assert sorted(paths) == sorted(experiment.results.loc[experiment.results["kind"] == "trial", "trial"])
    for trial, path in paths.items():
        assert path.candidates == (f"{trial}@10", f"{trial}@20", trial) and list(path.steps) == [10, 20, 30]
        assert list(path.x) == list(rows.loc[list(path.candidates), "diversity/token_entropy"])
        assert list(path.y) == list(rows.loc[list(path.candidates), "reward/mean"])
    for group in info.groups:  # final models and points apart, both of the group's divergence
        for trials, kind in ((group.trials, "trial"), (group.points, "point")):
            assert trials.trials and all(rows.loc[t, "kind"] == kind for t in trials.trials), (group.name, kind)
            assert all(rows.loc[t, "divergence"] == group.name for t in trials.trials)
    assert set(info.derived.trials) == {EXPO, HALF, SOUP} and info.derived.infeasible == (SOUP,)
    assert dict(zip(info.derived.trials, info.derived.labels, strict=True)) == {
        EXPO: "×1.5 of β=0.0887", HALF: "×0.5 of β=0.0887", SOUP: "soup"}  # fmt: skip
    parent = rows.loc["6895fda7"]
    assert sorted(info.recipes) == sorted(
        (parent["diversity/token_entropy"], parent["reward/mean"], rows.loc[d, "diversity/token_entropy"],
         rows.loc[d, "reward/mean"]) for d in (EXPO, HALF))  # fmt: skip
    labels = dict(zip(info.frontier.trials, info.frontier.labels, strict=True))
    assert labels[EXPO] == "×1.5 of β=0.0887" and labels["dd903de4@10"] == "β=1.66 @10"

    left = draw_pareto(info).axes[0]
    drawn = [line for line in left.lines if line.get_gid() == "path"]
    assert len(drawn) == len(paths) == 10
    expected = {tuple(zip(p.x, p.y, strict=True)) for p in paths.values()}
    assert {tuple(zip(line.get_xdata(), line.get_ydata(), strict=True)) for line in drawn} == expected
    assert all(line.get_linewidth() < 1 and line.get_alpha() <= 0.5 for line in drawn)
    small = [line for line in left.lines if line.get_gid() == "point"]
    final = [line for line in left.lines if line.get_label() in {group.name for group in info.groups}]
    assert sum(len(line.get_xdata()) for line in small) == 20
    assert max(line.get_markersize() for line in small) < min(line.get_markersize() for line in final)
    (crosses,) = [line for line in left.lines if line.get_gid() == "derived"]
    assert sorted(zip(crosses.get_xdata(), crosses.get_ydata(), strict=True)) == sorted(
        (rows.loc[d, "diversity/token_entropy"], rows.loc[d, "reward/mean"]) for d in (EXPO, HALF))  # fmt: skip
    assert crosses.get_marker() == "X" and crosses.get_label() == "derived (weight arithmetic)"
    hollow = [line for line in left.lines if line.get_gid() == "infeasible"]
    assert [(x, y) for line in hollow for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)] == [
        (rows.loc[SOUP, "diversity/token_entropy"], rows.loc[SOUP, "reward/mean"])]  # fmt: skip
    assert len([line for line in left.lines if line.get_gid() == "recipe"]) == 2
    texts = [t.get_text() for t in left.texts] + [t.get_text() for t in left.get_legend().get_texts()]
    assert not [t for t in texts if "nan" in t.lower()]


def test_interactive_frontier_hovers_each_candidates_kind_step_and_recipe(tmp_path):
    experiment = load_experiment(_with_candidates(tmp_path))
    info = interactive_info({"A": experiment})
    assert len([trace for trace in info.traces if trace.kind == "path"]) == 10
    hovers = {re.match(r"trial: ([^<]+)<br>", text).group(1): (text, small)
              for trace in info.traces if trace.kind == "trials"
              for text, small in zip(trace.hover, trace.small, strict=True)}  # fmt: skip
    assert sorted(hovers) == sorted(experiment.trained["trial"])
    assert "point at step 10 of trial dd903de4" in hovers["dd903de4@10"][0] and hovers["dd903de4@10"][1]
    assert not hovers["dd903de4"][1] and "point at" not in hovers["dd903de4"][0]
    (derived,) = [trace for trace in info.traces if trace.kind == "derived"]
    assert len(derived.hover) == 3 and derived.symbols.count("x-open") == 1  # the infeasible soup
    assert any("derived: base + 1.5·(6895fda7 − base): extrapolated from the base (ExPO)" in h for h in derived.hover)
    figure = draw_interactive(info)
    assert "derived (weight arithmetic)" in [trace.name for trace in figure.data]
    assert not [h for trace in info.traces for h in trace.hover if "nan" in h.lower()]


def test_report_names_each_derived_candidates_recipe_and_the_frontier_ones(tmp_path):
    out = _with_candidates(tmp_path)
    experiment = load_experiment(out)
    text = write_report(out, resamples=50)["report.md"].read_text()
    assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE)
    assert text.startswith("# Sweep ") and "33 candidates (0 errored): 10 trials, 20 points along their training, 3 " \
        "derived by weight arithmetic" in text  # fmt: skip
    section = _section(text, "Candidates beyond the trials")
    front = set(experiment.search_frontier["trial"])
    counts = {kind: len(front & set(experiment.results.loc[experiment.results["kind"] == kind, "trial"]))
              for kind in ("trial", "point", "derived")}  # fmt: skip
    assert (f"10 trials ({counts['trial']} on the search's frontier); 20 points along "
            f"training ({counts['point']} on the search's frontier); 3 derived by weight arithmetic "
            f"({counts['derived']} on the search's frontier)") in section  # fmt: skip
    rows = experiment.results.set_index("trial")
    for derived in (EXPO, HALF, SOUP):
        (line,) = [line for line in section.splitlines() if line.startswith(f"| {derived} |")]
        assert f"| {rows.loc[derived, 'recipe']} |" in line
        assert line.endswith("| yes |") == (derived in front), line
    assert f"| {SOUP} |" in section and "| broke fluency/nonword_rate 0.3 > 0.15 |" in section
    points = [line for line in section.splitlines() if re.match(r"\| \w+@\d+ \|", line)]
    assert {line.split(" | ")[0][2:] for line in points} == front & set(rows.index[rows["kind"] == "point"])
    assert "| dd903de4@10 | dd903de4 | 10 | js_divergence β=1.66 lr=0.0014 @10 |" in section
    pick = _section(text, "What to pick")
    assert pick.strip().startswith(f"The frontier holds {len(front)} of 33 finished candidates: 10 trials, 20 points "
                                   "along training, 3 derived by weight arithmetic.")  # fmt: skip
    (best,) = [line for line in pick.splitlines() if line.startswith("- Highest reward: ")]
    assert (f"**derived by weight arithmetic**, js_divergence ×1.5 of β=0.0887 (candidate `{EXPO}`: base + "
            "1.5·(6895fda7 − base): extrapolated from the base (ExPO))") in best  # fmt: skip
    (widest,) = [line for line in pick.splitlines() if line.startswith("- Highest diversity on the frontier: ")]
    assert "(point `dd903de4@10`: trial `dd903de4` at step 10, a model saved along its training)" in widest
    every = _section(text, "Every candidate")
    assert "| trial | index | status | kind | step |" in every and f"| {SOUP} |  | ok | derived |  | soup |" in every
    table = divergence_table(experiment, {})
    assert "candidate" in table and not set(table["trial"]) & {EXPO, HALF, SOUP}
