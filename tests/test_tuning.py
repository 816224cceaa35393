"""Hyper-parameter tuning: trials recorded, failures survived, runs resumed."""

from __future__ import annotations

import json

import pytest

from recbole_ext.config import ConfigError
from recbole_ext.tuning import TrialLog, tune


def tune_tiny(tmp_path, make_config, space: str, algo: str = "exhaustive", max_evals: int = 2):
    hyper = tmp_path / "space.hyper"
    hyper.write_text(space)
    config = make_config()
    config.pop("dataset")
    return tune(str(hyper), model="BPR", dataset="tiny", algo=algo, max_evals=max_evals,
                output=str(tmp_path / "trials.jsonl"), config_dict=config)


def read_trials(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]


def test_two_trials_are_recorded_with_metrics(tmp_path, make_config):
    best = tune_tiny(tmp_path, make_config, "learning_rate choice [0.001,0.01]\n")
    trials = read_trials(tmp_path)
    assert [t["params"]["learning_rate"] for t in trials] == [0.001, 0.01]
    for trial in trials:
        assert trial["status"] == "ok"
        assert set(trial["best_valid_result"]) == set(trial["test_result"])
    bigger = trials[0]["valid_score_bigger"]
    scores = [t["best_valid_score"] for t in trials]
    assert best["best_valid_score"] == (max(scores) if bigger else min(scores))


def test_failing_trial_is_logged_and_search_continues(tmp_path, make_config):
    best = tune_tiny(tmp_path, make_config, "embedding_size choice [-1,8]\n")
    trials = {t["params"]["embedding_size"]: t for t in read_trials(tmp_path)}
    assert trials[-1]["status"] == "failed" and trials[-1]["error"]
    assert trials[8]["status"] == "ok"
    assert best["params"] == {"embedding_size": 8}


def test_rerun_resumes_without_repeating_finished_trials(tmp_path, make_config):
    tune_tiny(tmp_path, make_config, "learning_rate choice [0.001,0.01]\n")
    first = read_trials(tmp_path)
    tune_tiny(tmp_path, make_config, "learning_rate choice [0.001,0.01]\n")
    assert read_trials(tmp_path) == first  # nothing appended: both trials read back


def test_random_search_is_seeded_so_it_resumes(tmp_path, make_config):
    tune_tiny(tmp_path, make_config, "learning_rate loguniform -8,-3\n", algo="random", max_evals=2)
    first = read_trials(tmp_path)
    tune_tiny(tmp_path, make_config, "learning_rate loguniform -8,-3\n", algo="random", max_evals=2)
    assert read_trials(tmp_path) == first


def test_malformed_hyper_file_names_the_line(tmp_path, make_config):
    with pytest.raises(ConfigError, match=r"space.hyper:2: expected"):
        tune_tiny(tmp_path, make_config, "learning_rate choice [0.1]\nembedding_size between 1,2\n")


def test_corrupt_trial_log_is_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"params": {}, "status": "ok"}\nnot json\n')
    with pytest.raises(ConfigError, match="t.jsonl:2"):
        TrialLog(path)


@pytest.mark.slow
def test_ray_tune_records_trials_like_hyperopt(tmp_path, make_config):
    pytest.importorskip("pyarrow")
    hyper = tmp_path / "space.hyper"
    hyper.write_text("learning_rate choice [0.001,0.01]\n")
    config = make_config()
    config.pop("dataset")
    best = tune(str(hyper), model="BPR", dataset="tiny", tool="ray",
                output=str(tmp_path / "trials.jsonl"), config_dict=config)
    trials = read_trials(tmp_path)
    assert sorted(t["params"]["learning_rate"] for t in trials) == [0.001, 0.01]
    assert all(t["status"] == "ok" for t in trials)
    assert best["best_valid_score"] in {t["best_valid_score"] for t in trials}


def test_plugin_model_tunes_with_its_shipped_space_and_lower_is_better(tmp_path, make_config):
    from contract_settings import MODEL_OVERRIDES

    from recbole_ext.config import PROPERTIES_DIR

    config = {**make_config(), **MODEL_OVERRIDES["BiasedMF"]}
    config.pop("dataset")
    best = tune(str(PROPERTIES_DIR / "hyper" / "BiasedMF.hyper"), model="BiasedMF", dataset="tiny",
                algo="random", max_evals=2, output=str(tmp_path / "trials.jsonl"), config_dict=config)
    trials = read_trials(tmp_path)
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials)
    assert trials[0]["valid_score_bigger"] is False  # RMSE
    assert best["best_valid_score"] == min(t["best_valid_score"] for t in trials)


def test_recbole_ray_path_ranks_trials_reported_by_our_objective(tmp_path, make_config):
    """RecBole's run_hyper.py Ray path: our objective_function as the Ray trainable, two trials."""
    pytest.importorskip("pyarrow")
    import ray
    import yaml
    from ray import tune as ray_tune

    from recbole_ext.quick_start import objective_function

    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({**make_config(), "model": "BPR"}))
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    analysis = ray_tune.run(ray_tune.with_parameters(objective_function, config_file_list=[str(fixed)]),
                            config={"learning_rate": ray_tune.grid_search([0.001, 0.01])},
                            num_samples=1, resources_per_trial={"cpu": 1}, verbose=0,
                            local_dir=str(tmp_path / "ray"))
    assert len(analysis.trials) == 2 and all(t.status == "TERMINATED" for t in analysis.trials)
    best = analysis.get_best_trial("recall@10", "max", "last")
    assert 0 <= best.last_result["recall@10"] <= 1
    assert best.config["learning_rate"] in (0.001, 0.01)


def test_objective_reports_nothing_outside_ray(tmp_path, make_config):
    from recbole_ext.quick_start import report_to_ray_tune

    assert report_to_ray_tune({"recall@10": 0.5}) is False
