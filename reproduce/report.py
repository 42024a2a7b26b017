"""Learning curves and results tables of a sweep (reproduce/sweep.py), kept as data and made from that data alone.

    python reproduce/report.py --sweep-dir results/long-results --out docs/results/long-results
    python reproduce/report.py --from-csv docs/results/long-results
    python reproduce/report.py --sweep-dir new-dir --out docs/results/long-results --keep-recorded

The first reads the TensorBoard logs of the sweep's runs into two CSV files, then makes the report from them; the
second re-makes the report from the CSV files alone (what a repository keeps instead of the logs); the third goes on
with a record whose run directories were lost: the record's runs that the new sweep directory lacks, or has not
completed where the record has, keep their rows as recorded. They write to --out (default: the directory read; with
--from-csv, another --out gets the report and figures only):
- `evals.csv`: one row per evaluation (`eval/episodic_return`) of every run: config, env_id, seed, step, eval_return,
  and where the run logs them (else empty): sparsity_actor, sparsity_critic (1 - `sparse/{actor,critic}_density`),
  n_step (`charts/n_step`) and buffer_capacity (`buffer/capacity`: RLx2's dynamic buffer). Each is the value last
  logged at or before the evaluation step or, before the first one logged, the first (the scripts log them from
  step 0, their first training iteration or first buffer check; until then they hold their initial value);
- `runs.csv`: one row per run of the sweep, started or not: config, env_id, seed, twin (its dense twin's config),
  complete (True once the sweep wrote its `done.json`: it reached its last step), total_timesteps (from its command;
  empty if the command leaves the script's default), and the last value it logged of each of LAST_VALUE_TAGS;
- `curves.png`: eval return against environment steps, mean and +- one std over seeds, one axis per env and sparse
  configuration with its dense twin (solid and dashed, in two colours), and one per configuration without a pair;
- `buffer.png`, only when some run logs a buffer capacity: that capacity per seed against steps on a log axis (each
  seed its own colour, line style and width, so seeds that coincide still show), and a vertical line where the n-step
  of the targets changes; one axis per env and configuration;
- `report.md`: its title and run conditions from `about.json` when the directory has one (written by hand: `title`,
  `ran`, `machine`, `conditions` and `commands`, each configuration's command line, which names its backend); then per
  env a table of our runs, our sparse runs' % of their dense twins over training, the env's `remarks` from about.json
  (by env id, written by hand: what the numbers alone cannot explain, such as a seed that stalls) and, below them, the
  published numbers (theirs, copied from the papers, with their budget, env version and seeds).

Definitions, per configuration and env, over its seeds that have evaluations, each cut at the last evaluation step all
of them reached (the table's steps):
- incomplete: a run of the configuration is not complete (running, failed, interrupted or not started); the table
  says "incomplete: k of n seeds at step N" and lists the runs that are not complete;
- final return: each seed's mean of its last 10 evaluations, then mean +- std over seeds (population std, ddof=0);
- % of dense twin: our final return over the twin's, x 100, both at the smaller of their two steps (the cell names
  that step when it is not ours); none when the twin's is not positive;
- sparsity, FLOPs, weights: the last value the run logged (`sparse/*`), averaged over seeds; FLOPs are relative to
  the dense twin of the same network (training: one env step + training iteration; inference: one action);
  weights count weight matrices only (no biases), as the papers do;
- % of dense twin over training: the same % with both cut at 1/4, 1/2 and 3/4 of that step (each cell names the last
  evaluation step before the cut), and at it; beside it the paper's % of dense for the method on the env (PAPER_METHOD
  names the method of a config) and ours minus it, in points; under the table, each such row said plainly: how far
  below or above the paper's % it ends, and whether a shortfall shrank from the first quarter to the end (as a
  shorter budget than theirs would explain) or not (more steps alone do not close it), or that a run as long as the
  paper's is not short of it by its budget;
- steps to reach the dense twin: the first evaluation step at which the score (mean of the last up to 10
  evaluations) of the seed-averaged curve reaches the twin's final return, both cut as for %; "not reached" if never,
  none where the % is none;
- ours beside the released code: each configuration `X` of ours that a configuration `X-released` (the authors' code,
  reproduce/released.py) sits beside on the env, both cut at the last step all their seeds reached: both final
  returns, ours minus theirs and the seeds' spread (ours' std plus theirs': a larger difference means the mean +- std
  ranges do not overlap, said under the table), and each one's % of its own dense twin (theirs over ours' twin, the
  cell naming it, where the released code's dense setting has not run on the env) beside the paper's;
- complete runs only: where an incomplete configuration cuts a complete run short (at the step its seeds not complete
  reached), a second table holds the env's complete runs alone, each to its last step;
- SPS: the median over seeds of each run's last `charts/SPS` (its average env steps per second over the run).
"""

import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tyro
from matplotlib.figure import Figure  # without pyplot: no display, savefig renders PNG with Agg
from matplotlib.ticker import FuncFormatter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository root, for reproduce.*
from reproduce.sweep import total_timesteps  # noqa: E402

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
EVAL_TAGS = {  # evals.csv's columns after eval_return, and the tags they come from (a density's column is 1 - it)
    "sparsity_actor": "sparse/actor_density",
    "sparsity_critic": "sparse/critic_density",
    "n_step": "charts/n_step",
    "buffer_capacity": "buffer/capacity",
}
EVAL_COLUMNS = ("config", "env_id", "seed", "step", "eval_return", *EVAL_TAGS)
ABOUT = "about.json"  # optional, written by hand beside the CSV files: what the data cannot say (when, where, how)
RUN_COLUMNS = ("config", "env_id", "seed", "twin", "complete", "total_timesteps", *LAST_VALUE_TAGS)


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
# a preset's config: its method above (ours, and the released code that reproduce/released.py runs)
RELEASED = "-released"  # a configuration of the released code is named after ours with it (reproduce/released.py)
PAPER_METHOD = {"ds-td3": "DS-TD3", "ds-sac": "DS-SAC", "rlx2": "RLx2", "ds-td3-released": "DS-TD3", "rlx2-released": "RLx2"}


@dataclass
class RunLog:
    config: str
    env_id: str
    seed: int
    twin: str | None
    complete: bool  # the sweep wrote done.json: the run reached its last step
    total_timesteps: int | None  # as its command sets it
    evals: dict[str, np.ndarray]  # evals.csv's columns from "step" on, one value per evaluation; NaN: not logged
    last: dict[str, float]  # the last value of each of LAST_VALUE_TAGS the run logged

    @property
    def name(self) -> str:
        return f"{self.config}/{self.env_id}/seed{self.seed}"

    @property
    def started(self) -> bool:
        return len(self.evals["step"]) > 0


@dataclass
class Summary:
    config: str
    twin: str | None
    seeds: int  # the seeds with evaluations
    runs: int  # the seeds in the sweep
    complete: bool  # every run in the sweep is complete
    steps: int  # the last evaluation step every seed reached
    curve_steps: np.ndarray  # evaluation steps every seed has
    curve_mean: np.ndarray
    curve_std: np.ndarray
    final_mean: float
    final_std: float
    last: dict[str, float]  # LAST_VALUE_TAGS averaged over seeds; charts/SPS: median over seeds
    twin_final: float | None = None  # the dense twin's final return at `compared_at`, if it ran on this env
    compared_at: int | None = None  # the smaller of this configuration's and its twin's steps
    percent_of_twin: float | None = None  # None without a twin, or when its final return is not positive
    steps_to_twin: int | None = None
    percent_over_training: list[tuple[int, float | None]] | None = None  # (step, % of twin) at 1/4, 1/2, 3/4, all


def value_at(events: list, steps: np.ndarray) -> np.ndarray:
    """A logged quantity at each of `steps`: the value last logged at or before it, or (before any) the first."""
    logged = np.array([e.step for e in events])
    order = np.argsort(logged, kind="stable")  # a step logged twice (a resumed run): its last value
    index = np.searchsorted(logged[order], steps, side="right") - 1
    return np.array([e.value for e in events], dtype=np.float64)[order][np.maximum(index, 0)]


def read_run(run_dir: Path) -> RunLog:
    """One run directory of a sweep: its run.json and, once it has started, its TensorBoard log."""
    spec = json.loads((run_dir / "run.json").read_text())
    event_dirs = sorted(path for path in (run_dir / "runs").glob("*") if path.is_dir())
    if len(event_dirs) > 1:
        raise SystemExit(f"error: {run_dir / 'runs'} should hold one run's log, holds {len(event_dirs)}")
    scalars = {}
    if event_dirs:
        events = EventAccumulator(str(event_dirs[0]), size_guidance={"scalars": 0})
        events.Reload()
        scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    returns = dict(sorted({e.step: e.value for e in scalars.get("eval/episodic_return", [])}.items()))
    steps = np.array(list(returns), dtype=np.int64)
    evals = {"step": steps, "eval_return": np.array(list(returns.values()), dtype=np.float64)}
    for column, tag in EVAL_TAGS.items():
        values = value_at(scalars[tag], steps) if tag in scalars and len(steps) else np.full(len(steps), np.nan)
        evals[column] = 1 - values if tag.endswith("_density") else values
    last = {tag: float(scalars[tag][-1].value) for tag in LAST_VALUE_TAGS if tag in scalars}
    complete = (run_dir / "done.json").exists()
    budget = total_timesteps(spec["argv"])
    return RunLog(spec["config"], spec["env_id"], spec["seed"], spec["twin"], complete, budget, evals, last)


def cell(value: object) -> str:
    """A CSV cell: empty when not logged, whole numbers without a decimal point, others at TensorBoard's float32."""
    if value is None or isinstance(value, (str, bool)):
        return "" if value is None else str(value)
    number = float(value)
    return "" if np.isnan(number) else str(int(number)) if number.is_integer() else str(np.float32(number))


def write_csv(path: Path, columns: tuple[str, ...], rows) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows([cell(value) for value in row] for row in rows)


def write_csvs(sweep_dir: Path, out: Path, keep_recorded: bool = False) -> list[str]:
    """evals.csv and runs.csv in `out`, from the run directories of a sweep. With `keep_recorded`, a run of the record
    already in `out` is kept as recorded where the sweep has no directory for it, or has not completed it and the
    record has; returns the names of the runs kept."""
    run_dirs = sorted(spec.parent for spec in sweep_dir.glob("*/*/seed*/run.json"))
    if not run_dirs:
        raise SystemExit(f"error: no run (*/*/seed*/run.json) in {sweep_dir}")
    by_name = {run.name: run for run in map(read_run, run_dirs)}
    kept = []
    if keep_recorded and (out / "runs.csv").exists():
        for run in read_csvs(out):
            if run.name not in by_name or (run.complete and not by_name[run.name].complete):
                by_name[run.name] = run
                kept.append(run.name)
    runs = sorted(by_name.values(), key=lambda run: (run.config, run.env_id, run.seed))
    out.mkdir(parents=True, exist_ok=True)
    keys = [[run.config, run.env_id, run.seed] for run in runs]
    last_values = [[run.twin, run.complete, run.total_timesteps, *map(run.last.get, LAST_VALUE_TAGS)] for run in runs]
    write_csv(out / "runs.csv", RUN_COLUMNS, (key + values for key, values in zip(keys, last_values)))
    evals = [zip(*(run.evals[column] for column in EVAL_COLUMNS[3:])) for run in runs]
    write_csv(out / "evals.csv", EVAL_COLUMNS, (key + list(values) for key, run in zip(keys, evals) for values in run))
    return sorted(kept)


def read_csvs(data_dir: Path) -> list[RunLog]:
    """The runs of runs.csv with their evaluations from evals.csv."""
    evals: dict[tuple[str, str, str], list[dict]] = {}
    with open(data_dir / "evals.csv", newline="") as file:
        for row in csv.DictReader(file):
            evals.setdefault((row["config"], row["env_id"], row["seed"]), []).append(row)
    runs = []
    with open(data_dir / "runs.csv", newline="") as file:
        for row in csv.DictReader(file):
            rows = evals.get((row["config"], row["env_id"], row["seed"]), [])
            columns = {column: np.array([float(r[column] or "nan") for r in rows]) for column in EVAL_COLUMNS[3:]}
            columns["step"] = columns["step"].astype(np.int64)
            last = {tag: float(row[tag]) for tag in LAST_VALUE_TAGS if row[tag]}
            runs.append(RunLog(row["config"], row["env_id"], int(row["seed"]), row["twin"] or None, row["complete"] == "True",
                               int(row["total_timesteps"]) if row["total_timesteps"] else None, columns, last))  # fmt: skip
    return runs


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """At each index, the mean of the last `window` values up to it (fewer at the start)."""
    sums = np.cumsum(values)
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    previous = np.concatenate([np.zeros(window), sums])[: len(values)]
    return (sums - previous) / counts


def summarize(runs: list[RunLog], until: int | None = None) -> Summary:
    """One configuration on one env, over its seeds with evaluations, each cut at `until` (default: the last
    evaluation step all of them reached)."""
    started = [run for run in runs if run.started]
    until = min(int(run.evals["step"][-1]) for run in started) if until is None else until
    steps = [run.evals["step"][run.evals["step"] <= until] for run in started]
    returns = [run.evals["eval_return"][run.evals["step"] <= until] for run in started]
    curve_steps = sorted(set.intersection(*(set(s.tolist()) for s in steps)))
    curves = np.array([[r[s == step][-1] for step in curve_steps] for s, r in zip(steps, returns)])
    finals = np.array([r[-FINAL_EVALS:].mean() for r in returns])
    tags = set.intersection(*(set(run.last) for run in started))
    last = {tag: float(np.mean([run.last[tag] for run in started])) for tag in tags}
    if "charts/SPS" in tags:
        last["charts/SPS"] = float(np.median([run.last["charts/SPS"] for run in started]))
    return Summary(
        config=runs[0].config,
        twin=runs[0].twin,
        seeds=len(started),
        runs=len(runs),
        complete=all(run.complete for run in runs),
        steps=int(curve_steps[-1]),
        curve_steps=np.array(curve_steps),
        curve_mean=curves.mean(axis=0),
        curve_std=curves.std(axis=0),
        final_mean=float(finals.mean()),
        final_std=float(finals.std()),
        last=last,
    )


def summarize_env(runs: list[RunLog]) -> list[Summary]:
    """Every configuration with evaluations on one env, each sparse one followed by its dense twin; compares each with
    its twin at the step both reached."""
    by_config: dict[str, list[RunLog]] = {}
    for run in sorted(runs, key=lambda run: run.config):
        by_config.setdefault(run.config, []).append(run)
    summaries = {config: summarize(group) for config, group in by_config.items() if any(run.started for run in group)}
    configs = list(summaries)
    twins = {s.twin for s in summaries.values() if s.twin in summaries}
    order = []
    for config in configs:
        if config not in twins:
            order += [config] + ([summaries[config].twin] if summaries[config].twin in summaries else [])
    order += [config for config in configs if config not in order]  # a twin whose sparse configuration is elsewhere
    for summary in summaries.values():
        if summary.twin not in summaries:
            continue
        at = min(summary.steps, summaries[summary.twin].steps)
        own, twin = (summarize(by_config[config], at) for config in (summary.config, summary.twin))
        summary.twin_final, summary.compared_at = twin.final_mean, at
        summary.percent_of_twin = percent_of(own, twin)
        reached = np.flatnonzero(trailing_mean(own.curve_mean, FINAL_EVALS) >= twin.final_mean)
        summary.steps_to_twin = int(own.curve_steps[reached[0]]) if len(reached) else None
        summary.percent_over_training = []
        groups = [by_config[config] for config in (summary.config, summary.twin)]
        for until in (at // 4, at // 2, 3 * at // 4):
            if all(run.evals["step"][0] <= until for group in groups for run in group if run.started):
                own, twin = (summarize(group, until) for group in groups)
                summary.percent_over_training.append((own.steps, percent_of(own, twin)))
        summary.percent_over_training.append((at, summary.percent_of_twin))
    return [summaries[config] for config in dict.fromkeys(order)]


def percent_of(own: Summary, twin: Summary) -> float | None:
    """Our final return over the dense twin's, x 100; None when the twin's is not positive."""
    return None if twin.final_mean <= 0 else 100 * own.final_mean / twin.final_mean


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
        seeds = f"{s.seeds}" if s.complete else f"incomplete: {s.seeds} of {s.runs} seeds at step {s.steps:,}"
        percent = fmt(s.percent_of_twin, ".1f", "%")
        if s.percent_of_twin is not None and s.compared_at != s.steps:
            percent += f" (at {s.compared_at:,})"
        densities = [last(f"sparse/{net}_density") for net in ("actor", "critic")]
        sparsity = [fmt(None if density is None else 100 * (1 - density), ".1f", "%") for density in densities]
        weights = "—"
        if "sparse/actor_weights" in s.last and "sparse/critic_weights" in s.last:
            weights = f"{s.last['sparse/actor_weights']:,.0f} + {s.last['sparse/critic_weights']:,.0f}"
        if s.percent_of_twin is None:  # no twin, or its final return is not positive: nothing to reach
            to_twin = "—"
        elif s.steps_to_twin is None:
            to_twin = "not reached"
        else:
            to_twin = f"{s.steps_to_twin:,} ({100 * s.steps_to_twin / s.compared_at:.0f}%)"
        flops = [fmt(last(f"sparse/{kind}_FLOPs_ratio"), ".3f", "x") for kind in ("training", "inference")]
        lines.append(
            f"| {s.config} | {s.twin or '—'} | {seeds} | {s.steps:,} | {s.final_mean:.1f} ± {s.final_std:.1f} "
            f"| {percent} | {sparsity[0]} | {sparsity[1]} | {flops[0]} | {flops[1]} "
            f"| {weights} | {to_twin} | {fmt(last('charts/SPS'), '.0f')} |"
        )
    return lines


def published_percent(row: Published) -> float | None:
    """A published row's % of dense: as published (RLx2), else its return over its paper's dense return on the env."""
    if row.percent_of_dense is not None or row.sparsity == "dense":
        return row.percent_of_dense
    dense = next(o.final_return for o in PUBLISHED if (o.paper, o.env, o.sparsity) == (row.paper, row.env, "dense"))
    return 100 * row.final_return / dense


def gap_table(env_id: str, summaries: list[Summary]) -> list[str]:
    """Each sparse configuration's % of its dense twin at 1/4, 1/2, 3/4 and all of the steps both reached, and the
    paper's % of dense for the method, where the paper gives one for the env."""
    rows = [s for s in summaries if s.percent_over_training]
    if not rows:
        return []
    lines = [
        "% of dense twin over training (each cell: both cut at the step in brackets, scored as in the table above), "
        "and the paper's % of dense for the same method and env (their budget, not ours).",
        "",
        "| config | dense twin | at 1/4 | at 1/2 | at 3/4 | at the end | the paper's % of dense | ours minus the paper's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    readings = []
    for s in rows:
        cells = [f"{fmt(value, '.1f', '%')} ({step:,})" for step, value in s.percent_over_training]
        cells = ["—"] * (4 - len(cells)) + cells  # a quarter before the first evaluation of a seed
        key = (PAPER_METHOD.get(s.config), env_id.split("-")[0])
        published = next((row for row in PUBLISHED if (row.method, row.env) == key), None)
        paper, difference = "—", "—"
        if published is not None and (theirs := published_percent(published)) is not None:
            paper = f"{theirs:.1f}% ({published.paper.name}; budget: {published.paper.budget})"
            if s.percent_of_twin is not None:
                difference = f"{s.percent_of_twin - theirs:+.1f} points"
                readings.append(reading(s, theirs, published.paper.budget))
        lines.append(f"| {s.config} | {s.twin} | {' | '.join(cells)} | {paper} | {difference} |")
    return lines + ([""] + readings if readings else [])


def budget_steps(budget: str) -> float:
    """The env steps of a published budget ("1M steps", "500k steps (its default)"); infinite where it is not stated."""
    match = re.match(r"([\d.]+)([kM]) steps", budget)
    return float(match[1]) * {"k": 1e3, "M": 1e6}[match[2]] if match else float("inf")


def reading(s: Summary, theirs: float, budget: str) -> str:
    """One configuration's % of dense against the paper's, said plainly: how far below or above it, and whether the
    distance shrank over our run (what a longer budget could explain) or not; a run as long as the paper's is not
    short of it by its budget."""
    gap = s.percent_of_twin - theirs
    text = f"- `{s.config}`, at {s.compared_at:,} steps: {abs(gap):.1f} points {'below' if gap < 0 else 'above'} the "
    text += f"paper's % of dense (their budget: {budget})"
    step, first = next(((step, value) for step, value in s.percent_over_training if value is not None), (None, None))
    if step is None or step == s.compared_at:
        return text + "."
    text += f"; at {step:,}, {abs(first - theirs):.1f} points {'below' if first < theirs else 'above'}."
    if gap >= 0:
        why = "A % of dense also depends on how far each dense twin got in its budget."
    elif s.compared_at >= budget_steps(budget):
        why = "Our run is as long as the paper's: its budget does not explain the shortfall."
    elif first - theirs < gap:
        why = "The shortfall shrinks with steps, as a shorter budget would explain; whether it closes by theirs, this run "
        why += "does not show."
    else:
        why = "The shortfall did not shrink over our run: more steps alone do not close it here (a budget can still matter"
        why += " through what scales with it, such as a schedule)."
    return f"{text} {why}"


def released_table(env_id: str, runs: list[RunLog]) -> list[str]:
    """Each configuration of ours beside the released code's runs of it (`X` and `X-released`), both cut at the last
    step all their seeds reached: final returns, ours minus theirs against the seeds' spread, and each one's % of its
    own dense twin (both cut at that step too, or at the twin's last if earlier; theirs over ours' twin, named, where theirs
    has none) beside the paper's."""
    by_config: dict[str, list[RunLog]] = {}
    for run in runs:
        by_config.setdefault(run.config, []).append(run)
    by_config = {config: group for config, group in by_config.items() if any(run.started for run in group)}
    released = [config for config in sorted(by_config) if config.endswith(RELEASED)]
    matched = [(config.removesuffix(RELEASED), config) for config in released if config.removesuffix(RELEASED) in by_config]
    if not matched:
        return []
    lines = [
        f"Ours beside the authors' released code ({', '.join(f'`{theirs}`' for _, theirs in matched)}: their scripts, "
        "unmodified, run by `reproduce/released.py`), both cut at the last step all their seeds reached. Spread: ours' std plus theirs' "
        "(over seeds); a larger difference means the two mean ± std ranges do not overlap. % of dense twin: each over "
        "its own twin, cut alike; where the released code's dense setting has no run here, theirs over ours' (named).",
        "",
        "| ours | theirs | steps | ours: final return | theirs: final return | ours minus theirs | spread "
        "| ours: % of dense twin | theirs: % of dense twin | the paper's % of dense |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    readings = []
    for ours, theirs in matched:
        at = min(int(run.evals["step"][-1]) for run in by_config[ours] + by_config[theirs] if run.started)
        own, their = (summarize(by_config[config], at) for config in (ours, theirs))
        finals = [f"{s.final_mean:.1f} ± {s.final_std:.1f} ({seeds_said(s)})" for s in (own, their)]
        difference, spread = own.final_mean - their.final_mean, own.final_std + their.final_std
        percents = []
        for config in (ours, theirs):
            twin, over_ours = by_config[config][0].twin, ""
            if twin not in by_config and by_config[ours][0].twin in by_config:  # theirs without a dense run: over ours'
                twin, over_ours = by_config[ours][0].twin, f" of `{by_config[ours][0].twin}`"
            if twin not in by_config:
                percents.append("—")
                continue
            until = min(at, min(int(run.evals["step"][-1]) for run in by_config[twin] if run.started))
            percent = percent_of(summarize(by_config[config], until), summarize(by_config[twin], until))
            percents.append(
                fmt(percent, ".1f", "%") + over_ours + ("" if until == at or percent is None else f" (at {until:,})")
            )
        key = (PAPER_METHOD.get(ours), env_id.split("-")[0])
        published = next((row for row in PUBLISHED if (row.method, row.env) == key), None)
        paper = "—" if published is None else fmt(published_percent(published), ".1f", "%")
        if published is not None and paper != "—":
            paper += f" ({published.paper.name}; budget: {published.paper.budget})"
        lines.append(f"| {ours} | {theirs} | {at:,} | {finals[0]} | {finals[1]} | {difference:+.1f} | {spread:.1f} "
                     f"| {percents[0]} | {percents[1]} | {paper} |")  # fmt: skip
        head = f"- `{ours}` and `{theirs}` at {at:,} steps: "
        said = f"{head}ours {'above' if difference > 0 else 'below'} theirs by {abs(difference):.1f}"
        if own.seeds < 2 and their.seeds < 2:
            readings.append(f"{head}one seed on each side, no spread to judge the difference by yet.")
        elif min(own.seeds, their.seeds) < 2:  # where the one seed lies against the other side's seeds
            (single, s), (other, o) = sorted(((ours, own), (theirs, their)), key=lambda pair: pair[1].seeds)
            inside = abs(s.final_mean - o.final_mean) <= o.final_std
            readings.append(
                f"{said}; `{single}` holds one seed, which lies {'inside' if inside else 'outside'} "
                f"`{other}`'s mean ± std ({o.final_mean:.1f} ± {o.final_std:.1f}): no spread of its own to judge the "
                "difference by yet."
            )
        else:
            beyond = abs(difference) > spread
            readings.append(
                f"{said}, {'more' if beyond else 'less'} than the seeds' spread ({spread:.1f})"
                + (": the two differ beyond seed noise here." if beyond else ": not told apart by these seeds.")
            )
    return lines + ["", *readings]


def seeds_said(s: Summary) -> str:
    """A configuration's seeds in a cell: how many, and how many of the sweep's while some are not complete."""
    return f"{s.seeds} seed{'s' if s.seeds > 1 else ''}" + ("" if s.complete else f" of {s.runs}, incomplete")


def env_tables(env_id: str, summaries: list[Summary], runs: list[RunLog]) -> list[str]:
    """The table of our runs on one env, their % of dense twin over training against the paper's, and ours beside the
    released code's runs."""
    lines = [*env_table(summaries), ""]
    if gaps := gap_table(env_id, summaries):
        lines += [*gaps, ""]
    if released := released_table(env_id, runs):
        lines += [*released, ""]
    return lines


def published_table(env_id: str) -> list[str]:
    rows = [row for row in PUBLISHED if row.env == env_id.split("-")[0]]
    if not rows:
        return [f"No published numbers for {env_id} in the papers."]
    lines = [
        "Published (theirs, not ours: copied from the papers; their budget, env version and seeds, not this sweep's).",
        "% of dense: as published for RLx2; for the others computed here from their returns.",
        "",
        "| paper | method | sparsity (actor / critic) | final return | % of dense | budget | env | seeds | score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        percent = published_percent(row)
        final = fmt(row.final_return, "") + ("" if row.std is None else f" ± {row.std}")
        env = f"{row.env}{row.paper.env_version}" if row.paper.env_version else "not stated"
        lines.append(
            f"| {row.paper.name} | {row.method} | {row.sparsity} | {final} | {fmt(percent, '.1f', '%')} "
            f"| {row.paper.budget} | {env} | {row.paper.seeds} | {row.paper.score} |"
        )
    return lines


STEPS_IN_THOUSANDS = FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0")


def figure_grid(panels: int, columns: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure with `panels` axes in rows of `columns`; the axes beyond them hidden."""
    columns = min(columns, panels)
    fig = Figure(figsize=(width * columns, height * -(-panels // columns)))
    axes = list(fig.subplots(-(-panels // columns), columns, squeeze=False).flat)
    for ax in axes[panels:]:
        ax.axis("off")
    for ax in axes[:panels]:
        ax.xaxis.set_major_formatter(STEPS_IN_THOUSANDS)
    return fig, axes[:panels]


def pairs(summaries: list[Summary]) -> list[list[Summary]]:
    """Each sparse configuration with its dense twin, and every configuration that is in no pair alone."""
    by_config = {s.config: s for s in summaries}
    in_a_pair = {s.twin for s in summaries if s.twin in by_config}
    return [[s, *([by_config[s.twin]] if s.twin in by_config else [])] for s in summaries if s.config not in in_a_pair]


def plot_curves(by_env: dict[str, list[Summary]], path: Path) -> None:
    panels = [(env_id, pair) for env_id, summaries in by_env.items() for pair in pairs(summaries)]
    fig, axes = figure_grid(len(panels), 3, 5.5, 4)
    for ax, (env_id, pair) in zip(axes, panels):
        for s, colour, style in zip(pair, ("C0", "C1"), ("-", "--")):  # the sparse configuration, then its dense twin
            label = f"{s.config} ({s.seeds} seed{'s' if s.seeds > 1 else ''}{'' if s.complete else ', incomplete'})"
            ax.plot(s.curve_steps, s.curve_mean, color=colour, linestyle=style, label=label)
            low, high = s.curve_mean - s.curve_std, s.curve_mean + s.curve_std
            ax.fill_between(s.curve_steps, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.set(title=f"{' vs '.join(s.config for s in pair)}, {env_id}", xlabel="environment steps",
               ylabel="eval return (mean ± std over seeds)")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


SEED_STYLES = (("-", 3.5), ("--", 2.2), (":", 1.6))  # (line style, width) per seed: wide under narrow


def plot_buffer(runs: list[RunLog], path: Path) -> bool:
    """RLx2's dynamic buffer: its capacity per seed against steps on a log axis, and where the n-step of the targets
    changes, one axis per env and configuration that logs a capacity. False (and no figure) when none does."""
    groups: dict[tuple[str, str], list[RunLog]] = {}
    for run in runs:
        if np.isfinite(run.evals["buffer_capacity"]).any():
            groups.setdefault((run.env_id, run.config), []).append(run)
    if not groups:
        return False
    fig, axes = figure_grid(len(groups), 2, 6.5, 4.6)
    for ax, ((env_id, config), group) in zip(axes, sorted(groups.items())):
        switches: dict[tuple[int, int, int], list[int]] = {}  # (step, n before, n after): the seeds that switched there
        for i, run in enumerate(group):
            style, width = SEED_STYLES[i % len(SEED_STYLES)]
            steps, capacity = run.evals["step"], run.evals["buffer_capacity"]
            ax.plot(steps, capacity, color=f"C{i}", linestyle=style, linewidth=width, label=f"seed {run.seed}")
            n_step = run.evals["n_step"]
            for j in np.flatnonzero(np.isfinite(n_step[:-1]) & np.isfinite(n_step[1:]) & (n_step[1:] != n_step[:-1])):
                switches.setdefault((int(steps[j + 1]), int(n_step[j]), int(n_step[j + 1])), []).append(run.seed)
        for (step, before, after), seeds in sorted(switches.items()):
            label = f"{before}-step to {after}-step targets (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
            ax.axvline(step, color="0.4", linestyle=(0, (1, 3)), linewidth=1.2, label=label)
        ax.set(title=f"{config} on {env_id}", xlabel="environment steps", ylabel="buffer capacity (log scale)", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return True


def read_about(data_dir: Path) -> dict:
    """about.json's fields (title, ran, machine, conditions, commands, remarks), or none."""
    return json.loads((data_dir / ABOUT).read_text()) if (data_dir / ABOUT).exists() else {}


def about_lines(about: dict) -> list[str]:
    """The title, and what the CSV files cannot say: when and where the runs ran, and each configuration's command."""
    title = about.get("title", "Results of a sweep (reproduce/sweep.py)")
    when_where = ", ".join(about[key] for key in ("ran", "machine") if key in about)
    lines = [f"# {title}" + (f" ({when_where})" if when_where else ""), ""]
    if "conditions" in about:
        lines += [about["conditions"], ""]
    if commands := about.get("commands"):
        lines += [
            "| config | command |",
            "|---|---|",
            *(f"| {name} | `{command}` |" for name, command in commands.items()),
            "",
        ]
        if kernel := [name for name, command in commands.items() if "--sparse-backend kernel" in command]:
            lines += [
                f"{', '.join(f'`{name}`' for name in kernel)} ran on the kernel backend (`--sparse-backend kernel`): the "
                "same algorithm as the default masked path, not the same numbers. Float rounding differs between the "
                "two, flips near-ties in the topology update's rankings, and the runs drift apart.",
                "",
            ]
    return lines


def write_report(data_dir: Path, out: Path | None = None) -> str:
    """report.md, curves.png and buffer.png in `out` (default: `data_dir`), from its evals.csv and runs.csv alone."""
    out = data_dir if out is None else out
    runs = read_csvs(data_dir)
    env_ids = sorted({run.env_id for run in runs if run.started})
    if not env_ids:
        raise SystemExit(f"error: no evaluation in {data_dir / 'evals.csv'}")
    by_env = {env_id: summarize_env([run for run in runs if run.env_id == env_id]) for env_id in env_ids}
    about = read_about(data_dir)
    remarks = about.get("remarks", {})
    if stray := sorted(set(remarks) - set(env_ids)):
        raise SystemExit(f"error: {data_dir / ABOUT}: remarks for {', '.join(stray)}, which has no run here")
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        "![Learning curves: eval return against steps, mean and one std over seeds, each sparse configuration beside "
        "its dense twin (dashed)](curves.png)"
    ]
    if plot_buffer(runs, out / "buffer.png"):
        figures.append("![RLx2's buffer capacity per seed against steps (log scale), and where its targets switch to "
                       "n steps](buffer.png)")  # fmt: skip
    lines = [
        *about_lines(about),
        "Ours: final return = each seed's mean of its last 10 evaluations, then mean ± std (population) over seeds. "
        "% of dense twin: our final return over our dense twin's, both cut at the smaller of their steps (named in the "
        "cell when it is not this row's). Sparsity, FLOPs (relative to the dense network) and weights (no biases): the "
        "runs' last logged values, mean over seeds. Steps to reach dense twin: first evaluation at which the "
        "seed-averaged score (mean of the last up to 10 evaluations) reaches the twin's final return (cut as for %). "
        "SPS: median over seeds of each run's average. Incomplete: a run of the configuration is not complete "
        "(running, stopped or failed); the row holds its seeds with evaluations, each cut at the last step all of them "
        "reached.",
        "",
        "This page and its figures (`curves.png`, and `buffer.png` where a run logs a buffer capacity) are made from "
        "`evals.csv` (every evaluation of every run) and `runs.csv` (one row per run) alone: "
        "`python reproduce/report.py --from-csv DIR` makes them again.",
        "",
        *figures,
    ]
    for env_id, summaries in by_env.items():
        env_runs = [run for run in runs if run.env_id == env_id]
        lines += ["", f"## {env_id}", "", *env_tables(env_id, summaries, env_runs)]
        complete = [run for run in env_runs if run.complete]
        cut = {s.config: s.steps for s in summaries if not s.complete}  # the step an incomplete row cuts its seeds at
        if any(run.config in cut and run.evals["step"][-1] > cut[run.config] for run in complete):
            lines += [
                "Complete runs only (the rows above cut every seed at the step all of them reached; these hold the "
                "seeds that reached their last step, each to it, twins compared on their complete seeds alike):",
                "",
                *env_tables(env_id, summarize_env(complete), complete),
            ]
        if env_id in remarks:
            lines += [remarks[env_id], ""]
        lines += published_table(env_id)
    incomplete = [run for run in runs if not run.complete]
    if incomplete:
        lines += ["", f"Not complete (no `done.json`: running, failed, interrupted or not started): {len(incomplete)} "
                  f"of {len(runs)} runs"]  # fmt: skip
        for run in incomplete:
            budget = "" if run.total_timesteps is None else f" of {run.total_timesteps:,}"
            reached = f"evaluated up to step {run.evals['step'][-1]:,}{budget}" if run.started else "no evaluation yet"
            lines.append(f"- `{run.name}`: {reached}")
    report = "\n".join(lines) + "\n"
    (out / "report.md").write_text(report)
    plot_curves(by_env, out / "curves.png")
    return report


@dataclass
class Args:
    sweep_dir: str | None = None
    """the --out directory of reproduce/sweep.py: its runs' TensorBoard logs are read into evals.csv and runs.csv"""
    from_csv: str | None = None
    """instead of --sweep-dir: a directory holding evals.csv and runs.csv; the report is made from them alone"""
    out: str | None = None
    """where the CSV files (with --sweep-dir), report.md and the figures go; default: the directory read"""
    keep_recorded: bool = False
    """with --sweep-dir: keep the runs of the record already in --out (its evals.csv and runs.csv) that the sweep
    directory has no directory for, or has not completed where the record has: a sweep that goes on in a new directory
    (its run directories lost with a machine, or only some seeds rerun) keeps the complete runs it recorded"""


if __name__ == "__main__":
    args = tyro.cli(Args, description=__doc__)
    if (args.sweep_dir is None) == (args.from_csv is None):
        raise SystemExit("error: give either --sweep-dir or --from-csv")
    if args.sweep_dir is not None:
        if kept := write_csvs(Path(args.sweep_dir), Path(args.out or args.sweep_dir), args.keep_recorded):
            print(f"kept as recorded (absent or not complete in the sweep directory): {len(kept)} runs: {', '.join(kept)}")
    data_dir = Path(args.from_csv or args.out or args.sweep_dir)
    out = Path(args.out or data_dir)
    print(write_report(data_dir, out))
    print(f"written to {out}: report.md and the figures" + (", from evals.csv and runs.csv" if args.sweep_dir else ""))
