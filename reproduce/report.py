"""Learning curves and results tables of a sweep (reproduce/sweep.py), read from its runs' TensorBoard logs.

    python reproduce/report.py --sweep-dir results

writes, next to the runs:
- `curves.png`: `eval/episodic_return` against environment steps, mean and +- one std over seeds, one axis per env;
  a dense twin is dashed, in the colour of its sparse configuration;
- `report.md`: per env, a table of our runs and, below it, the published numbers (theirs, copied from the papers,
  with their budget, env version and seeds).

Only complete runs (with `done.json`) count; the report lists the others. Definitions, per configuration and env:
- final return: each seed's mean of its last 10 evaluations, then mean +- std over seeds (population std, ddof=0);
- % of dense twin: our final return over the twin's, x 100 (none when the twin's is not positive);
- sparsity, FLOPs, weights: the last value the run logged (`sparse/*`), averaged over seeds; FLOPs are relative to
  the dense twin of the same network (training: one env step + training iteration; inference: one action);
  weights count weight matrices only (no biases), as the papers do;
- steps to reach the dense twin: the first evaluation step at which the score (mean of the last up to 10
  evaluations) of the seed-averaged curve reaches the twin's final return; "not reached" if it never does;
- SPS: the median over seeds of each run's last `charts/SPS` (its average env steps per second over the run).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tyro
from matplotlib.figure import Figure  # without pyplot: no display, savefig renders PNG with Agg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

FINAL_EVALS = 10  # the DS-TD3 paper's score window (RLx2 used the last 30)
LAST_VALUE_TAGS = (
    "sparse/actor_density",
    "sparse/critic_density",
    "sparse/training_FLOPs_ratio",
    "sparse/inference_FLOPs_ratio",
    "sparse/actor_weights",
    "sparse/critic_weights",
    "charts/SPS",
)


@dataclass(frozen=True)
class Paper:
    name: str
    budget: str
    env_version: str | None  # the suffix of their env ids; None: not stated
    seeds: str
    score: str


class Published(NamedTuple):
    paper: Paper
    env: str  # env family
    method: str
    sparsity: str  # actor / critic
    final_return: int | None
    std: int | None
    percent_of_dense: float | None  # as published (RLx2); None: computed from the returns


# Published numbers, copied (numbers only) from the papers cited in each row. Theirs, not ours.
DS_TD3 = Paper("Sokar et al., IJCAI 2022", "1M steps", "-v3 (gym)", "5", "mean of the last 10 evaluations")
DS_SAC = Paper("Sokar et al., IJCAI 2022, appendix", "not stated", None, "not stated", "not stated")
RLX2 = Paper("Tan et al., ICLR 2023", "3M steps (its default)", None, "8", "mean of the last 30 evaluations")
PUBLISHED = [
    Published(DS_TD3, "HalfCheetah", "TD3", "dense", 11153, 473, None),
    Published(DS_TD3, "HalfCheetah", "static sparse TD3", "~50% overall", 10584, 307, None),
    Published(DS_TD3, "HalfCheetah", "DS-TD3", "~50% overall", 11460, 483, None),
    Published(DS_TD3, "Walker2d", "TD3", "dense", 4042, 577, None),
    Published(DS_TD3, "Walker2d", "static sparse TD3", "~50% overall", 3951, 444, None),
    Published(DS_TD3, "Walker2d", "DS-TD3", "~50% overall", 4871, 525, None),
    Published(DS_TD3, "Hopper", "TD3", "dense", 2185, 1224, None),
    Published(DS_TD3, "Hopper", "static sparse TD3", "~50% overall", 3571, 44, None),
    Published(DS_TD3, "Hopper", "DS-TD3", "~50% overall", 3587, 71, None),
    Published(DS_TD3, "Ant", "TD3", "dense", 4288, 1081, None),
    Published(DS_TD3, "Ant", "static sparse TD3", "~50% overall", 4149, 801, None),
    Published(DS_TD3, "Ant", "DS-TD3", "~50% overall", 5012, 597, None),
    Published(DS_TD3, "Humanoid", "TD3", "dense", 3809, 1053, None),
    Published(DS_TD3, "Humanoid", "static sparse TD3", "~50% overall", 4989, 546, None),
    Published(DS_TD3, "Humanoid", "DS-TD3", "~50% overall", 5238, 122, None),
    Published(DS_SAC, "HalfCheetah", "SAC", "dense", 11645, None, None),
    Published(DS_SAC, "HalfCheetah", "DS-SAC", "ER eps 12/80", 11084, None, None),
    Published(DS_SAC, "Walker2d", "SAC", "dense", 3858, None, None),
    Published(DS_SAC, "Walker2d", "DS-SAC", "ER eps 12/80", 4217, None, None),
    Published(DS_SAC, "Hopper", "SAC", "dense", 3100, None, None),
    Published(DS_SAC, "Hopper", "DS-SAC", "ER eps 7/20", 3229, None, None),
    Published(DS_SAC, "Ant", "SAC", "dense", 5899, None, None),
    Published(DS_SAC, "Ant", "DS-SAC", "ER eps 30/64", 5944, None, None),
    Published(DS_SAC, "Humanoid", "SAC", "dense", 5426, None, None),
    Published(DS_SAC, "Humanoid", "DS-SAC", "ER eps 61/64", 5585, None, None),
    Published(RLX2, "HalfCheetah", "RLx2", "90% / 85%", None, None, 99.8),
    Published(RLX2, "HalfCheetah", "static sparse", "90% / 85%", None, None, 77),
    Published(RLX2, "HalfCheetah", "SET", "90% / 85%", None, None, 93),
    Published(RLX2, "HalfCheetah", "RigL", "90% / 85%", None, None, 91),
    Published(RLX2, "Hopper", "RLx2", "98% / 95%", None, None, 97.0),
    Published(RLX2, "Hopper", "static sparse", "98% / 95%", None, None, 68),
    Published(RLX2, "Hopper", "SET", "98% / 95%", None, None, 67),
    Published(RLX2, "Hopper", "RigL", "98% / 95%", None, None, 91),
    Published(RLX2, "Walker2d", "RLx2", "97% / 95%", None, None, 98.1),
    Published(RLX2, "Walker2d", "static sparse", "97% / 95%", None, None, 43),
    Published(RLX2, "Walker2d", "SET", "97% / 95%", None, None, 39),
    Published(RLX2, "Walker2d", "RigL", "97% / 95%", None, None, 36),
    Published(RLX2, "Ant", "RLx2", "96% / 88%", None, None, 103.9),
    Published(RLX2, "Ant", "static sparse", "96% / 88%", None, None, 50),
    Published(RLX2, "Ant", "SET", "96% / 88%", None, None, 63),
    Published(RLX2, "Ant", "RigL", "96% / 88%", None, None, 69),
]


@dataclass
class RunLog:
    config: str
    env_id: str
    seed: int
    twin: str | None
    eval_steps: np.ndarray
    eval_returns: np.ndarray
    last: dict[str, float]  # the last value of each of LAST_VALUE_TAGS the run logged


@dataclass
class Summary:
    config: str
    twin: str | None
    seeds: int
    steps: int  # the last evaluation step every seed reached
    curve_steps: np.ndarray  # evaluation steps every seed has
    curve_mean: np.ndarray
    curve_std: np.ndarray
    final_mean: float
    final_std: float
    last: dict[str, float]  # LAST_VALUE_TAGS averaged over seeds; charts/SPS: median over seeds
    twin_final: float | None = None  # the dense twin's final return, if it ran on this env
    steps_to_twin: int | None = None

    @property
    def percent_of_twin(self) -> float | None:
        """None without a twin, or when its final return is not positive (then a ratio says nothing)."""
        return None if self.twin_final is None or self.twin_final <= 0 else 100 * self.final_mean / self.twin_final


def load_run(run_dir: Path) -> RunLog:
    spec = json.loads((run_dir / "run.json").read_text())
    event_dirs = sorted(path for path in (run_dir / "runs").iterdir() if path.is_dir())
    if len(event_dirs) != 1:
        raise SystemExit(f"error: {run_dir / 'runs'} should hold one run's log, holds {len(event_dirs)}")
    events = EventAccumulator(str(event_dirs[0]), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    if "eval/episodic_return" not in scalars:
        raise SystemExit(f"error: {event_dirs[0]} has no eval/episodic_return")
    evals = scalars["eval/episodic_return"]
    return RunLog(
        spec["config"],
        spec["env_id"],
        spec["seed"],
        spec["twin"],
        np.array([e.step for e in evals]),
        np.array([e.value for e in evals], dtype=np.float64),
        {tag: float(scalars[tag][-1].value) for tag in LAST_VALUE_TAGS if tag in scalars},
    )


def load_sweep(sweep_dir: Path) -> tuple[list[RunLog], list[Path]]:
    """The logs of the complete runs, and the run directories that are not complete."""
    run_dirs = sorted(spec.parent for spec in sweep_dir.glob("*/*/seed*/run.json"))
    complete = [run_dir for run_dir in run_dirs if (run_dir / "done.json").exists()]
    return [load_run(run_dir) for run_dir in complete], [run_dir for run_dir in run_dirs if run_dir not in complete]


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """At each index, the mean of the last `window` values up to it (fewer at the start)."""
    sums = np.cumsum(values)
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    previous = np.concatenate([np.zeros(window), sums])[: len(values)]
    return (sums - previous) / counts


def summarize(runs: list[RunLog]) -> Summary:
    """One configuration on one env, over its seeds."""
    curve_steps = sorted(set.intersection(*(set(run.eval_steps.tolist()) for run in runs)))
    curves = np.array([[run.eval_returns[run.eval_steps == step][-1] for step in curve_steps] for run in runs])
    finals = np.array([run.eval_returns[-FINAL_EVALS:].mean() for run in runs])
    tags = set.intersection(*(set(run.last) for run in runs))
    last = {tag: float(np.mean([run.last[tag] for run in runs])) for tag in tags}
    if "charts/SPS" in tags:
        last["charts/SPS"] = float(np.median([run.last["charts/SPS"] for run in runs]))
    return Summary(
        config=runs[0].config,
        twin=runs[0].twin,
        seeds=len(runs),
        steps=min(int(run.eval_steps[-1]) for run in runs),
        curve_steps=np.array(curve_steps),
        curve_mean=curves.mean(axis=0),
        curve_std=curves.std(axis=0),
        final_mean=float(finals.mean()),
        final_std=float(finals.std()),
        last=last,
    )


def summarize_env(runs: list[RunLog]) -> list[Summary]:
    """Every configuration that ran on one env, each sparse one followed by its dense twin; compares each with its twin."""
    configs = sorted({run.config for run in runs})
    summaries = {config: summarize([run for run in runs if run.config == config]) for config in configs}
    twins = {s.twin for s in summaries.values() if s.twin in summaries}
    order = []
    for config in configs:
        if config not in twins:
            order += [config] + ([summaries[config].twin] if summaries[config].twin in summaries else [])
    order += [config for config in configs if config not in order]  # a twin whose sparse configuration is elsewhere
    for summary in summaries.values():
        twin = summaries.get(summary.twin)
        if twin is not None:
            summary.twin_final = twin.final_mean
            score = trailing_mean(summary.curve_mean, FINAL_EVALS)
            reached = np.flatnonzero(score >= twin.final_mean)
            summary.steps_to_twin = int(summary.curve_steps[reached[0]]) if len(reached) else None
    return [summaries[config] for config in dict.fromkeys(order)]


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def env_table(summaries: list[Summary]) -> list[str]:
    lines = [
        "| config | dense twin | seeds | steps | final return | % of dense twin | actor sparsity | critic sparsity "
        "| training FLOPs | inference FLOPs | weights, actor + critic | steps to reach dense twin | SPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        last = s.last.get
        densities = [last(f"sparse/{net}_density") for net in ("actor", "critic")]
        sparsity = [fmt(None if density is None else 100 * (1 - density), ".1f", "%") for density in densities]
        weights = "—"
        if "sparse/actor_weights" in s.last and "sparse/critic_weights" in s.last:
            weights = f"{s.last['sparse/actor_weights']:,.0f} + {s.last['sparse/critic_weights']:,.0f}"
        if s.twin_final is None:
            to_twin = "—"
        elif s.steps_to_twin is None:
            to_twin = "not reached"
        else:
            to_twin = f"{s.steps_to_twin:,} ({100 * s.steps_to_twin / s.steps:.0f}%)"
        flops = [fmt(last(f"sparse/{kind}_FLOPs_ratio"), ".3f", "x") for kind in ("training", "inference")]
        lines.append(
            f"| {s.config} | {s.twin or '—'} | {s.seeds} | {s.steps:,} | {s.final_mean:.1f} ± {s.final_std:.1f} "
            f"| {fmt(s.percent_of_twin, '.1f', '%')} | {sparsity[0]} | {sparsity[1]} | {flops[0]} | {flops[1]} "
            f"| {weights} | {to_twin} | {fmt(last('charts/SPS'), '.0f')} |"
        )
    return lines


def published_table(env_id: str) -> list[str]:
    rows = [row for row in PUBLISHED if row.env == env_id.split("-")[0]]
    if not rows:
        return [f"No published numbers for {env_id} in the papers."]
    dense = {row.paper: row.final_return for row in rows if row.sparsity == "dense"}
    lines = [
        "Published (theirs, not ours: copied from the papers; their budget, env version and seeds, not this sweep's).",
        "% of dense: as published for RLx2; for the others computed here from their returns.",
        "",
        "| paper | method | sparsity (actor / critic) | final return | % of dense | budget | env | seeds | score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        percent = row.percent_of_dense
        if percent is None and row.sparsity != "dense" and dense.get(row.paper):
            percent = 100 * row.final_return / dense[row.paper]
        final = fmt(row.final_return, "") + ("" if row.std is None else f" ± {row.std}")
        env = f"{row.env}{row.paper.env_version}" if row.paper.env_version else "not stated"
        lines.append(
            f"| {row.paper.name} | {row.method} | {row.sparsity} | {final} | {fmt(percent, '.1f', '%')} "
            f"| {row.paper.budget} | {env} | {row.paper.seeds} | {row.paper.score} |"
        )
    return lines


def plot_curves(by_env: dict[str, list[Summary]], path: Path) -> None:
    columns = min(3, len(by_env))
    rows = -(-len(by_env) // columns)
    fig = Figure(figsize=(6 * columns, 4.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, (env_id, summaries) in zip(axes.flat, by_env.items()):
        colours: dict[str, str] = {}
        for s in summaries:  # a dense twin: dashed, in the colour of its sparse configuration
            sparse = next((o.config for o in summaries if o.twin == s.config and o.config in colours), None)
            colours[s.config] = colours[sparse] if sparse else f"C{len(set(colours.values())) % 10}"
            is_twin = any(o.twin == s.config for o in summaries)
            label = f"{s.config} ({s.seeds} seed{'s' if s.seeds > 1 else ''})"
            ax.plot(s.curve_steps, s.curve_mean, color=colours[s.config], linestyle="--" if is_twin else "-", label=label)
            low, high = s.curve_mean - s.curve_std, s.curve_mean + s.curve_std
            ax.fill_between(s.curve_steps, low, high, color=colours[s.config], alpha=0.2, linewidth=0)
        ax.set(title=env_id, xlabel="environment steps", ylabel="eval return (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(by_env) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_report(sweep_dir: Path) -> str:
    runs, incomplete = load_sweep(sweep_dir)
    if not runs:
        raise SystemExit(f"error: no complete run in {sweep_dir}")
    env_ids = list(dict.fromkeys(run.env_id for run in sorted(runs, key=lambda run: run.env_id)))
    by_env = {env_id: summarize_env([run for run in runs if run.env_id == env_id]) for env_id in env_ids}
    lines = [
        f"# Results of the sweep in `{sweep_dir}`",
        "",
        "Ours: final return = each seed's mean of its last 10 evaluations, then mean ± std (population) over seeds. "
        "Sparsity, FLOPs (relative to the dense network) and weights (no biases): the runs' last logged values, "
        "mean over seeds. Steps to reach dense twin: first evaluation at which the seed-averaged score (mean of the "
        "last up to 10 evaluations) reaches the twin's final return. SPS: median over seeds of each run's average. "
        "Learning curves: `curves.png`.",
    ]
    for env_id, summaries in by_env.items():
        lines += ["", f"## {env_id}", "", *env_table(summaries), "", *published_table(env_id)]
    if incomplete:
        lines += ["", f"Not included, without `done.json` (running, failed or interrupted): {len(incomplete)} runs"]
        lines += [f"- `{run_dir.relative_to(sweep_dir)}`" for run_dir in incomplete]
    report = "\n".join(lines) + "\n"
    (sweep_dir / "report.md").write_text(report)
    plot_curves(by_env, sweep_dir / "curves.png")
    return report


@dataclass
class Args:
    sweep_dir: str = "results"
    """the --out directory of reproduce/sweep.py; report.md and curves.png are written there"""


if __name__ == "__main__":
    args = tyro.cli(Args, description=__doc__)
    print(write_report(Path(args.sweep_dir)))
    print(f"written: {Path(args.sweep_dir) / 'report.md'}, {Path(args.sweep_dir) / 'curves.png'}")
