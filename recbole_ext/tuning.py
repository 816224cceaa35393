"""Hyper-parameter tuning of any model with RecBole's ``HyperTuning`` (hyperopt) or Ray Tune.

Both tools read RecBole's ``.hyper`` format (one ``name type values`` line per
parameter: ``choice [..]``, ``uniform low,high``, ``quniform low,high,q``,
``loguniform log_low,log_high``).

What this adds to RecBole's ``run_hyper.py``:

* every trial (parameters, valid and test metrics, seconds, status) is appended to a
  JSON-lines file as soon as it finishes;
* a failing trial is logged there with its error and the search goes on;
* rerunning the same command resumes: hyperopt is seeded, so it proposes the same
  parameters again, and finished trials are read back from the file instead of rerun.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

from recbole_ext.config import ConfigError

TRIAL_KEYS = ("best_valid_score", "valid_score_bigger", "best_valid_result", "test_result")


def params_key(params: dict) -> str:
    """Canonical text of a parameter set (the resume key)."""
    return json.dumps({k: _plain_number(v) for k, v in sorted(params.items())}, sort_keys=True)


def _plain_number(value: Any) -> Any:
    # hyperopt hands numpy scalars to the objective; JSON needs Python numbers.
    return value.item() if hasattr(value, "item") else value


class TrialLog:
    """Append-only JSON-lines record of trials, keyed by their parameters."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.trials: dict[str, dict] = {}
        if self.path.is_file():
            for line_no, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{self.path}:{line_no}: not a trial record ({err.msg}); "
                                      "move the file away to start a new search") from err
                self.trials[params_key(record["params"])] = record

    def get(self, params: dict) -> dict | None:
        return self.trials.get(params_key(params))

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.trials[params_key(record["params"])] = record

    def best(self) -> dict | None:
        finished = [r for r in self.trials.values() if r["status"] == "ok"]
        if not finished:
            return None
        bigger = finished[0]["valid_score_bigger"]
        return (max if bigger else min)(finished, key=lambda r: r["best_valid_score"])


class TrialFailed(RuntimeError):
    """A trial raised; it is recorded and the search continues."""


class TrialObjective:
    """``objective_function(config_dict, config_file_list)`` with logging, resume and failure capture.

    Args:
        base_config: fixed keys merged under each trial's parameters (model, dataset, ...).
        log: where trials are recorded.
        preset: paper preset applied to every trial.
    """

    def __init__(self, base_config: dict, log: TrialLog, preset: str | None = None) -> None:
        self.base_config = base_config
        self.log = log
        self.preset = preset

    def __call__(self, config_dict: dict, config_file_list: list[str] | None = None) -> dict:
        from recbole_ext.quick_start import run_recbole_ext

        params = {k: _plain_number(v) for k, v in config_dict.items()}
        previous = self.log.get(params)
        if previous is not None:
            print(f"trial already recorded ({previous['status']}): {params}", flush=True)
            if previous["status"] != "ok":
                raise TrialFailed(previous.get("error", "failed earlier"))
            return dict(previous, model=self.base_config.get("model"))
        start = time.perf_counter()
        try:
            result = run_recbole_ext(config_dict={**self.base_config, **params},
                                     config_file_list=config_file_list, preset=self.preset)
        except Exception as err:  # noqa: BLE001 - any failure of one trial is recorded
            self.log.append({"params": params, "status": "failed", "error": f"{type(err).__name__}: {err}",
                             "traceback": traceback.format_exc(limit=5),
                             "seconds": round(time.perf_counter() - start, 2)})
            print(f"trial FAILED ({type(err).__name__}: {err}); continuing", flush=True)
            raise TrialFailed(str(err)) from err
        record = {"params": params, "status": "ok", **{k: result[k] for k in TRIAL_KEYS},
                  "seconds": round(time.perf_counter() - start, 2),
                  "results_file": result.get("results_file")}
        self.log.append(record)
        return dict(record, model=result["model"])


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the duration of a block, then restore them
    (RecBole's HyperTuning gives hyperopt no seed; hyperopt reads it from the environment)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _skip_failed_trials(stop_fn):
    """hyperopt's no-progress early stop reads the last trial's loss, which a failed trial lacks."""

    def wrapped(trials, best_loss=None, iteration_no_progress=0):
        if "loss" not in trials.trials[-1]["result"]:
            return False, [best_loss, iteration_no_progress + 1]
        return stop_fn(trials, best_loss, iteration_no_progress)

    return wrapped


def _make_hyper_tuning():
    import hyperopt
    from recbole.trainer import HyperTuning

    class ResumableHyperTuning(HyperTuning):
        """RecBole's HyperTuning whose failed trials count as hyperopt failures, not crashes."""

        def __init__(self, *args, max_evals: int | None = None, **kwargs):
            super().__init__(*args, max_evals=max_evals or 100, **kwargs)
            self.early_stop_fn = _skip_failed_trials(self.early_stop_fn)
            if kwargs.get("algo") == "exhaustive" and max_evals is not None:
                # RecBole's exhaustive search replaces max_evals by the grid size; honour the cap
                grid, self.max_evals = self.max_evals, min(self.max_evals, max_evals)
                print(f"exhaustive search: {self.max_evals} of the grid's {grid} points (--max-evals)",
                      flush=True)

        def trial(self, params):
            try:
                return super().trial(params)
            except TrialFailed:
                return {"status": hyperopt.STATUS_FAIL}

    return ResumableHyperTuning


def tune(hyper_file: str, model: str | None, dataset: str | None, algo: str = "exhaustive",
         max_evals: int | None = None, tool: str = "hyperopt", output: str | None = None,
         config_dict: dict | None = None, config_file_list: list[str] | None = None,
         preset: str | None = None, seed: int = 2020) -> dict | None:
    """Search ``hyper_file``'s space for ``model`` on ``dataset``; return the best trial record.

    ``hyper_file`` is a ``.hyper`` path or the name of a shipped search space
    (``properties/hyper/<name>.hyper``, e.g. ``NRP``). ``max_evals``: trials at most (default:
    the whole grid for ``exhaustive``, 100 otherwise).

    Raises:
        ConfigError: a missing or malformed ``.hyper`` file, or a ``max_evals`` below the grid
            size with Ray's exhaustive search, which always runs the whole grid.
    """
    hyper_file = resolve_hyper_file(hyper_file)
    check_hyper_file(hyper_file)
    if tool == "ray" and algo == "exhaustive" and max_evals is not None and max_evals < grid_points(hyper_file):
        raise ConfigError(f"--max-evals {max_evals} with --algo exhaustive --tool ray: Ray's grid search "
                          f"runs all {grid_points(hyper_file)} points of {hyper_file}; use --tool hyperopt "
                          "(its exhaustive search stops after --max-evals) or --algo random")
    base = dict(config_dict or {})
    base.update({k: v for k, v in (("model", model), ("dataset", dataset)) if v is not None})
    base.setdefault("show_progress", False)
    output = output or os.path.join("saved", "tuning", f"{model}-{dataset}-{tool}-{algo}.jsonl")
    log = TrialLog(output)
    print(f"tuning {model} on {dataset} with {tool}/{algo}; trials -> {output} "
          f"({len(log.trials)} recorded earlier)", flush=True)
    if tool == "ray":
        run_ray_tune(hyper_file, base, log, algo, max_evals, config_file_list, preset)
    else:
        tuner = _make_hyper_tuning()(TrialObjective(base, log, preset), params_file=hyper_file,
                                     fixed_config_file_list=config_file_list, algo=algo,
                                     max_evals=max_evals, early_stop=max(10, max_evals or 100))
        with _environment(HYPEROPT_FMIN_SEED=str(seed)):  # same proposals on resume
            tuner.run()
    best = log.best()
    if best is None:
        print("no trial finished successfully", flush=True)
    else:
        print(f"best params: {best['params']}\nbest valid : {best['best_valid_result']}\n"
              f"test result: {best['test_result']}", flush=True)
    return best


def resolve_hyper_file(name: str) -> str:
    """A ``.hyper`` path, or a shipped search space by name (``NRP`` -> ``properties/hyper/NRP.hyper``)."""
    from recbole_ext.config import PROPERTIES_DIR

    if Path(name).is_file():
        return name
    shipped = PROPERTIES_DIR / "hyper" / f"{name}.hyper"
    if shipped.is_file():
        return str(shipped)
    available = ", ".join(sorted(p.stem for p in (PROPERTIES_DIR / "hyper").glob("*.hyper")))
    raise ConfigError(f"{name}: hyper-parameter file not found (a .hyper path, or one of the shipped "
                      f"search spaces: {available})")


def check_hyper_file(path: str) -> None:
    """Reject a malformed ``.hyper`` line with file:line before any trial runs."""
    allowed = {"choice", "uniform", "quniform", "loguniform"}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.strip().split(" ")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(parts) < 3 or parts[1] not in allowed:
            raise ConfigError(f"{path}:{line_no}: expected `name {'|'.join(sorted(allowed))} values`, "
                              f"got {line.strip()!r}")


def ray_search_space(hyper_file: str, exhaustive: bool) -> dict:
    """Translate a ``.hyper`` file to Ray Tune's search space (``loguniform`` bounds are logs)."""
    import ast

    from ray import tune as ray_tune

    space = {}
    for line in Path(hyper_file).read_text().splitlines():
        parts = line.strip().split(" ")
        if len(parts) < 3 or line.lstrip().startswith("#"):
            continue
        name, kind, value = parts[0], parts[1], "".join(parts[2:])
        if kind == "choice":
            options = ast.literal_eval(value)
            space[name] = ray_tune.grid_search(options) if exhaustive else ray_tune.choice(options)
        elif kind == "uniform":
            low, high = map(float, value.split(","))
            space[name] = ray_tune.uniform(low, high)
        elif kind == "quniform":
            low, high, q = map(float, value.split(","))
            space[name] = ray_tune.quniform(low, high, q)
        else:
            low, high = map(float, value.split(","))
            space[name] = ray_tune.loguniform(math.exp(low), math.exp(high))
    return space


def grid_points(hyper_file: str) -> int:
    """Points of the grid that an exhaustive search over ``hyper_file``'s ``choice`` lines visits."""
    import ast

    points = 1
    for line in Path(hyper_file).read_text().splitlines():
        parts = line.strip().split(" ")
        if len(parts) >= 3 and parts[1] == "choice" and not line.lstrip().startswith("#"):
            points *= len(ast.literal_eval("".join(parts[2:])))
    return points


def run_ray_tune(hyper_file: str, base: dict, log: TrialLog, algo: str, max_evals: int | None,
                 config_file_list: list[str] | None, preset: str | None) -> None:
    """Ray Tune on the local machine, or on a cluster when ``RAY_ADDRESS`` is set.

    Every trial runs in a Ray worker; results are recorded in the same trial log as the
    hyperopt path, so the two tools resume and report the same way.
    """
    import ray
    from ray import tune as ray_tune
    from ray.air import session

    log_path = str(log.path.resolve())
    repo_cwd = os.getcwd()

    def trainable(params: dict) -> None:
        os.chdir(repo_cwd)  # relative data_path / checkpoint_dir as on the driver
        objective = TrialObjective(base, TrialLog(log_path), preset)
        try:
            result = objective(params, config_file_list)
        except TrialFailed:
            session.report({"failed": 1})
            return
        session.report({"best_valid_score": result["best_valid_score"], "failed": 0})

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    exhaustive = algo == "exhaustive"
    space = ray_search_space(hyper_file, exhaustive)
    ray_tune.run(trainable, config=space, num_samples=1 if exhaustive else (max_evals or 100),
                 resources_per_trial={"cpu": 1}, raise_on_failed_trial=False, verbose=1,
                 local_dir=str(log.path.parent.resolve() / "ray"))
    log.__init__(log.path)  # trials were appended by the workers
