"""Every figure renders a real, non-blank PNG and a PDF from small synthetic tidy tables, and what it draws (line
points, bar heights, error bars, stacked shares) is read back from the matplotlib artists and compared with the
table's numbers."""

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from analysis import plots
from analysis.tables import ERROR_CLASSES, PAPER_LADDER, results_table, taxonomy_table

OPS = [2, 6, 10, 12, 14, 16, 19]
FAILURES = [e for e in ERROR_CLASSES if e not in ("verified", "answer_right_process_wrong")]


def synthetic_samples(skills: dict[str, float], contexts=("zoo",), n_problems=4, n_samples=16, seed=0):
    """Per-sample table where success falls with op and rises with an arm's skill."""
    rng = np.random.default_rng(seed)
    frames = []
    for checkpoint, skill in skills.items():
        for context in contexts:
            for op in OPS:
                p = 1 / (1 + np.exp(-(skill - 0.5 * op + rng.normal(0, 1, n_problems))))
                answer = rng.random((n_problems, n_samples)) < p[:, None]
                verified = answer & (rng.random(answer.shape) < 0.8)
                error = np.where(verified, "verified", np.where(answer, "answer_right_process_wrong",
                                                                rng.choice(FAILURES, answer.shape)))
                problem, sample = np.indices(answer.shape)
                frames.append(pd.DataFrame(dict(
                    checkpoint=checkpoint, context=context, op=op, problem_id=problem.ravel(),
                    sample_idx=sample.ravel(), answer_correct=answer.ravel(), verified=verified.ravel(),
                    error=error.ravel())))
    return pd.concat(frames, ignore_index=True)


def with_design(samples: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    return results_table(samples, PAPER_LADDER, n_boot=100).merge(manifest, on="checkpoint")


ARMS = ["base", "rl-id", "rl-edge"]


@pytest.fixture(scope="module")
def arm_samples():
    return synthetic_samples({"base": 5.0, "rl-id": 6.0, "rl-edge": 7.5}, contexts=("zoo", "teachers"))


@pytest.fixture(scope="module")
def arm_results(arm_samples):
    return results_table(arm_samples, PAPER_LADDER, n_boot=100)


def assert_rendered(png, pdf, min_kb=10):
    assert png.stat().st_size > min_kb * 1024
    pixels = mpimg.imread(png)
    assert pixels.ndim == 3 and pixels[..., :3].var() > 1e-3  # not a blank canvas
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5 * 1024


def split_rows(results, metric="pass@k_verified", **where):
    """The table's split-level rows for `metric`, filtered by column == value."""
    rows = results[results["op"].isna() & (results["metric"] == metric)]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows


def test_passk_curves(arm_results, tmp_path):
    fig = plots.plot_passk_curves(arm_results, order=ARMS, out=tmp_path / "passk")
    assert_rendered(tmp_path / "passk.png", tmp_path / "passk.pdf")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "%" in ax.get_ylabel()
    assert list(ax.get_xticks()) == [1, 2, 4, 8, 16] and ax.xaxis.get_major_formatter()(16, 0) == "16"
    panels = 0
    for ax in fig.axes:
        split, context = ax.get_title().split(" · ")
        for line in ax.lines:
            expected = split_rows(arm_results, checkpoint=line.get_label(), context=context, split=split)
            expected = expected.sort_values("k")
            assert list(line.get_xdata()) == expected["k"].tolist()
            np.testing.assert_allclose(line.get_ydata(), 100 * expected["value"].to_numpy())
        assert sorted(line.get_label() for line in ax.lines) == sorted(ARMS)
        panels += 1
    assert panels == 2 * 3  # contexts x splits


def test_split_bars_for_base_and_rl_arms(arm_results, tmp_path):
    fig = plots.plot_split_bars(arm_results, order=ARMS, out=tmp_path / "fig3")
    assert_rendered(tmp_path / "fig3.png", tmp_path / "fig3.pdf")
    splits = list(dict.fromkeys(split_rows(arm_results)["split"]))
    assert len(fig.axes) == 2 * 2  # contexts x (pass@1, pass@16)
    for ax in fig.axes:
        k, context = ax.get_title().removeprefix("pass@").split(" · ")
        bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
        assert list(bars) == ARMS
        for arm, container in bars.items():
            rows = split_rows(arm_results, checkpoint=arm, context=context, k=int(k)).set_index("split").loc[splits]
            heights = [patch.get_height() for patch in container.patches]
            np.testing.assert_allclose(heights, 100 * rows["value"].to_numpy())
            # The error bar spans the table's bootstrap CI.
            (segments,) = container.errorbar.lines[2]
            spans = [(seg[0][1], seg[1][1]) for seg in segments.get_segments()]
            np.testing.assert_allclose(spans, 100 * rows[["ci_lo", "ci_hi"]].to_numpy())


def test_arm_keeps_its_colour_across_figures(arm_results):
    colour = to_rgba(plots.arm_palette(ARMS)["rl-edge"])
    only_rl = arm_results[arm_results["checkpoint"] != "base"]
    curves = plots.plot_passk_curves(only_rl, order=ARMS)
    bars = plots.plot_split_bars(arm_results, order=ARMS)
    line = next(l for l in curves.axes[0].lines if l.get_label() == "rl-edge")
    bar = next(c for c in bars.axes[0].containers if c.get_label() == "rl-edge")
    assert to_rgba(line.get_color()) == colour == bar.patches[0].get_facecolor()


def test_exposure_figure(tmp_path):
    exposures = [0.0, 0.1, 1.0, 10.0]
    skills = {f"{arm}@{e}": 4 + e / 3 + (1.5 if arm == "rl" else 0) for arm in ("base", "rl") for e in exposures}
    manifest = pd.DataFrame([dict(checkpoint=name, arm=name.split("@")[0], exposure_pct=float(name.split("@")[1]))
                             for name in skills])
    results = with_design(synthetic_samples(skills, contexts=("teachers",)), manifest)
    fig = plots.plot_exposure(results, context="teachers", order=["base", "rl"], out=tmp_path / "fig4")
    assert_rendered(tmp_path / "fig4.png", tmp_path / "fig4.pdf")
    assert fig.axes[0].get_xscale() == "symlog"
    for ax in fig.axes:
        k, split = ax.get_title().removeprefix("pass@").split(" · ")[:2]
        for container in ax.containers:
            rows = split_rows(results, arm=container.get_label(), split=split, k=int(k), context="teachers")
            rows = rows.sort_values("exposure_pct")
            line = container.lines[0]
            assert list(line.get_xdata()) == rows["exposure_pct"].tolist() == exposures
            np.testing.assert_allclose(line.get_ydata(), 100 * rows["value"].to_numpy())


def test_budget_split_figure(tmp_path):
    budgets, betas = [5.04e6, 1.05e9, 20e9], [0.0, 0.2, 0.5, 0.8, 1.0]
    skills = {f"T{b:g}-beta{beta}": 4 + np.log10(b / 1e9) + 2 * beta * (1 - beta) for b in budgets for beta in betas}
    manifest = pd.DataFrame([dict(checkpoint=f"T{b:g}-beta{beta}", budget=b, beta=beta)
                             for b in budgets for beta in betas])
    results = with_design(synthetic_samples(skills, n_problems=3), manifest)
    fig = plots.plot_budget_split(results, k=1, out=tmp_path / "fig6")
    assert_rendered(tmp_path / "fig6.png", tmp_path / "fig6.pdf")
    assert [ax.get_title() for ax in fig.axes] == ["edge · zoo", "hard · zoo"]
    for ax in fig.axes:
        split = ax.get_title().split(" · ")[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["5.04M tokens", "1.05B tokens", "20B tokens"]
        bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
        assert list(bars) == ["β=0 (mid-training only)", "β=0.2 (Light-RL)", "β=0.5", "β=0.8 (Heavy-RL)",
                              "β=1 (RL only)"]
        for container, beta in zip(bars.values(), betas):
            rows = split_rows(results, beta=beta, split=split, k=1).sort_values("budget")
            np.testing.assert_allclose([p.get_height() for p in container.patches], 100 * rows["value"].to_numpy())
            (segments,) = container.errorbar.lines[2]
            spans = [(seg[0][1], seg[1][1]) for seg in segments.get_segments()]
            np.testing.assert_allclose(spans, 100 * rows[["ci_lo", "ci_hi"]].to_numpy())


def test_reward_variants_figure(tmp_path):
    variants = {"outcome": 6.0, "alpha=0.2": 6.5, "alpha=0.5": 6.4, "strict": 6.6}
    manifest = pd.DataFrame({"checkpoint": list(variants), "variant": list(variants)})
    results = with_design(synthetic_samples(variants), manifest)
    plots.plot_reward_variants(results, ks=[1, 16], order=list(variants), out=tmp_path / "fig7")
    assert_rendered(tmp_path / "fig7.png", tmp_path / "fig7.pdf")


@pytest.mark.parametrize("by", ["split", "op"])
def test_error_taxonomy_figure(arm_samples, tmp_path, by):
    taxonomy = taxonomy_table(arm_samples[arm_samples["context"] == "zoo"], PAPER_LADDER)
    fig = plots.plot_error_taxonomy(taxonomy, by=by, order=ARMS, out=tmp_path / f"fig8_{by}")
    assert_rendered(tmp_path / f"fig8_{by}.png", tmp_path / f"fig8_{by}.pdf")
    level = taxonomy[taxonomy["op"].isna()] if by == "split" else taxonomy[taxonomy["op"].notna()]
    xs = list(dict.fromkeys(level["split"])) if by == "split" else sorted(level["op"].unique())
    assert [ax.get_title() for ax in fig.axes] == [f"{arm} · zoo" for arm in ARMS]
    for ax, arm in zip(fig.axes, ARMS):
        stacked = np.zeros(len(xs))
        for container, error in zip(ax.containers, ERROR_CLASSES):
            assert container.get_label() == error.replace("_", " ")
            shares = level[level["checkpoint"] == arm].pivot(index=by, columns="error", values="fraction")
            expected = 100 * shares.reindex(index=xs, columns=[error])[error].fillna(0).to_numpy()
            np.testing.assert_allclose([p.get_height() for p in container.patches], expected)
            np.testing.assert_allclose([p.get_y() for p in container.patches], stacked, atol=1e-9)
            stacked += expected
        np.testing.assert_allclose(stacked, 100.0)  # every sample falls in exactly one class


def training_metrics():
    rows = []
    for run, speed in (("rl-id", 1.0), ("rl-edge", 0.5)):
        for step in range(0, 200, 2):
            rows += [dict(run=run, step=step, metric="loss", value=2 * np.exp(-speed * step / 80)),
                     dict(run=run, step=step, metric="reward", value=0.8 * (1 - np.exp(-speed * step / 50))),
                     dict(run=run, step=step, metric="entropy", value=1.5 - step / 400),
                     dict(run=run, step=step, metric="response_length", value=300 + step)]
    metrics = pd.DataFrame(rows)
    # rl-edge crashed after step 150 and resumed from its step-100 checkpoint: steps 100..150 logged twice.
    resumed = metrics[(metrics["run"] == "rl-edge") & metrics["step"].between(100, 150)].assign(value=-1.0)
    return pd.concat([metrics, resumed], ignore_index=True)


def test_training_curves_keep_last_logged_value_per_step(tmp_path):
    fig = plots.plot_training_curves(training_metrics(), order=ARMS, out=tmp_path / "train")
    assert_rendered(tmp_path / "train.png", tmp_path / "train.pdf")
    reward_ax = next(ax for ax in fig.axes if ax.get_title() == "reward")
    line = next(l for l in reward_ax.lines if l.get_label() == "rl-edge")
    steps, values = line.get_xdata(), line.get_ydata()
    assert len(steps) == len(set(steps)) == 100 and np.all(np.diff(steps) > 0)
    assert np.all(values[(steps >= 100) & (steps <= 150)] == -1.0)
    assert "tokens" in next(ax for ax in fig.axes if ax.get_title() == "response length").get_ylabel()


def test_save_keeps_dots_in_names(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    png, pdf = plots.save(fig, tmp_path / "sub" / "beta0.5")
    assert png.name == "beta0.5.png" and pdf.name == "beta0.5.pdf" and png.exists()


def test_missing_design_columns_are_named(arm_results):
    with pytest.raises(ValueError, match="exposure_pct"):
        plots.plot_exposure(arm_results, context="zoo")
    with pytest.raises(ValueError, match="beta"):
        plots.plot_budget_split(arm_results)


def test_several_rows_for_one_bar_are_refused(arm_results):
    two_seeds_one_variant = arm_results.assign(variant="outcome")
    with pytest.raises(ValueError, match="average seeds"):
        plots.plot_reward_variants(two_seeds_one_variant)


def test_asking_for_a_k_the_table_lacks_is_an_error(arm_results):
    with pytest.raises(ValueError, match=r"k=\[3\]"):
        plots.plot_split_bars(arm_results, ks=[1, 3])
