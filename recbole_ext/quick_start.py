"""Run, tune and reload any model (ours or RecBole's) through recbole-ext's pipeline.

This mirrors ``recbole.quick_start`` but uses our Config, registry, dataset checks and
checkpoint-safe trainers, and never imports ``recbole.quick_start`` (which imports ray
at module level and loads checkpoints in a way torch >= 2.6 rejects).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from logging import getLogger
from pathlib import Path
from typing import Any

import torch
from recbole.utils import init_logger, init_seed, get_local_time

from recbole_ext.compat import complete_recbole_model, load_checkpoint, to_plain, unpack_other_parameter
from recbole_ext.config import Config
from recbole_ext.data import check_dataset_files, create_dataset, data_preparation
from recbole_ext.registry import get_model, get_trainer

RESULT_KEYS = ("model", "best_valid_score", "valid_score_bigger", "best_valid_result", "test_result")


def _init_logger(config) -> None:
    # RecBole's init_logger creates ./log/<Model> with a check-then-mkdir that races when
    # DDP ranks start together (FileExistsError); create it first, idempotently.
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    init_logger(config)


def build_model(config, train_dataset) -> torch.nn.Module:
    """Instantiate the model on the training split, complete what RecBole leaves missing
    (:func:`recbole_ext.compat.complete_recbole_model`) and apply ``embedding_init`` if set."""
    model = complete_recbole_model(get_model(config["model"])(config, train_dataset).to(config["device"]))
    if config["embedding_init"] not in (None, "default"):
        from recbole_ext.model.init import apply_embedding_init

        apply_embedding_init(model, train_dataset, config)
    return model


def run_recbole_ext(model: str | None = None, dataset: str | None = None,
                    config_file_list: list[str] | None = None, config_dict: dict | None = None,
                    saved: bool = True, preset: str | None = None,
                    results_path: str | None = None, resume_file: str | None = None,
                    queue: Any = None) -> dict:
    """Train and test one model; write a results JSON; return the results.

    Args:
        model, dataset, config_file_list, config_dict, preset: see :class:`recbole_ext.Config`.
        saved: save the best checkpoint and test it (False: test the last weights).
        results_path: where to write the results JSON (default
            ``<checkpoint_dir>/results/<model>-<dataset>-<time>-<pid>.json``).
        resume_file: a checkpoint of the same model to continue training from.
        queue: for DDP workers, a queue that receives rank 0's result.

    Returns:
        dict with model, dataset, preset, best_valid_score, valid_score_bigger,
        best_valid_result, test_result, n_params, timings, checkpoint, results_file, config,
        and ``memory`` when the model defines ``memory_report()``.
    """
    start = time.perf_counter()
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list,
                    config_dict=config_dict, preset=preset)
    check_dataset_files(config)
    init_seed(config["seed"], config["reproducibility"])
    _init_logger(config)
    logger = getLogger()
    logger.info("config layers, lowest first: " + " < ".join(
        ["RecBole defaults", *config.loaded_files, "config_dict/command line"]))
    logger.info(config)

    dataset_obj = create_dataset(config)
    logger.info(dataset_obj)
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)
    data_seconds = time.perf_counter() - start

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = build_model(config, train_data._dataset)
    logger.info(model_obj)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model_obj)
    if resume_file:
        trainer.resume_checkpoint(resume_file)

    fit_start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"])
    fit_seconds = time.perf_counter() - fit_start
    test_start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved,
                                   show_progress=config["show_progress"])
    test_seconds = time.perf_counter() - test_start

    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "preset": config["preset"],
        "best_valid_score": to_plain(best_valid_score),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": to_plain(best_valid_result),
        "test_result": to_plain(test_result),
        "n_params": sum(p.numel() for p in model_obj.parameters()),
        "timings": {
            "data_seconds": round(data_seconds, 3),
            "fit_seconds": round(fit_seconds, 3),
            "test_seconds": round(test_seconds, 3),
            "total_seconds": round(time.perf_counter() - start, 3),
            "epochs_trained": len(getattr(trainer, "epoch_seconds", [])),
            "train_epoch_seconds": [round(s, 3) for s in getattr(trainer, "epoch_seconds", [])],
            "valid_seconds": [round(s, 3) for s in getattr(trainer, "valid_seconds", [])],
        },
        "valid_history": [list(entry) for entry in getattr(trainer, "valid_history", [])],
        "checkpoint": getattr(trainer, "saved_model_file", None) if saved else None,
        "device": str(config["device"]),
        "world_size": config["world_size"] or 1,
        "config_files": config.loaded_files,
        "config": to_plain(config.final_config_dict),
    }
    if hasattr(model_obj, "memory_report"):
        result["memory"] = to_plain(model_obj.memory_report())
    if hasattr(trainer, "extra_results"):
        result.update(to_plain(trainer.extra_results()))

    if config["local_rank"] == 0:
        result["results_file"] = write_results(result, results_path or _default_results_path(config))
        logger.info(f"best valid : {best_valid_result}")
        logger.info(f"test result: {test_result}")
        logger.info(f"results written to {result['results_file']}")
    if queue is not None and config["local_rank"] == 0:
        queue.put(result)
    return result


def _default_results_path(config) -> str:
    name = f"{config['model']}-{config['dataset']}-{get_local_time()}-{os.getpid()}.json"
    return os.path.join(config["checkpoint_dir"], "results", name)


def write_results(result: dict, path: str | os.PathLike) -> str:
    """Write ``result`` as JSON atomically (temp file + rename) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return str(path)


def objective_function(config_dict: dict | None = None, config_file_list: list[str] | None = None,
                       saved: bool = True) -> dict:
    """RecBole ``HyperTuning`` objective: one full run, the result dict HyperTuning expects."""
    result = run_recbole_ext(config_dict=config_dict, config_file_list=config_file_list, saved=saved)
    return {key: result[key] for key in RESULT_KEYS} | {"results_file": result.get("results_file")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, kwargs: dict, queue: Any) -> None:
    import torch.distributed as dist

    kwargs = dict(kwargs)
    kwargs["config_dict"] = dict(kwargs["config_dict"], local_rank=rank)
    try:
        run_recbole_ext(**kwargs, queue=queue)
        dist.barrier()  # a rank that tears gloo down while another still uses it aborts the other
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_recbole_ext_distributed(nproc: int, model: str | None = None, dataset: str | None = None,
                                config_file_list: list[str] | None = None,
                                config_dict: dict | None = None, saved: bool = True,
                                preset: str | None = None, results_path: str | None = None,
                                resume_file: str | None = None) -> dict:
    """Run with RecBole's DDP path on ``nproc`` local processes (gloo on CPU, nccl on GPUs).

    The caller's ``__main__`` must be import-safe (``if __name__ == "__main__":``):
    workers are started with the ``spawn`` method.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    ddp = {"nproc": nproc, "world_size": nproc, "offset": 0, "ip": "127.0.0.1", "port": _free_port()}
    kwargs = {"model": model, "dataset": dataset, "config_file_list": config_file_list,
              "config_dict": dict(config_dict or {}, **ddp), "saved": saved, "preset": preset,
              "results_path": results_path, "resume_file": resume_file}
    mp.start_processes(_ddp_worker, args=(kwargs, queue), nprocs=nproc, join=True,
                       start_method="spawn")
    return queue.get()


def load_data_and_model(model_file: str, trust_legacy: bool = False):
    """Rebuild config, data and model from a checkpoint (ours, or RecBole's if trusted).

    A checkpoint written by a DDP run is reloaded as a single-process run.

    Returns:
        tuple: ``(config, model, dataset, train_data, valid_data, test_data)``.
    """
    ckpt = load_checkpoint(model_file, "cpu", trust_legacy)
    config = config_from_checkpoint(ckpt)
    init_seed(config["seed"], config["reproducibility"])
    _init_logger(config)
    logging.getLogger().info(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = model_from_checkpoint(ckpt, config, train_data._dataset)
    return config, model, dataset, train_data, valid_data, test_data


def config_from_checkpoint(ckpt: dict, overrides: dict | None = None):
    """The run's config rebuilt from a loaded checkpoint (ours, or RecBole's pickled Config),
    with ``overrides`` on top (e.g. another evaluation protocol for the same weights)."""
    if isinstance(ckpt.get("config"), dict):
        return Config(model=ckpt["model"], dataset=ckpt["dataset"],
                      config_dict={**ckpt["external_config"], **(overrides or {})},
                      preset=ckpt.get("preset"))
    config = ckpt["config"]
    for key, value in (overrides or {}).items():
        config[key] = value
    return config


def model_from_checkpoint(ckpt: dict, config, train_dataset) -> torch.nn.Module:
    """The checkpoint's model, built on ``train_dataset`` with its saved weights and extra state."""
    model = get_model(config["model"])(config, train_dataset).to(config["device"])
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(unpack_other_parameter(ckpt.get("other_parameter")))
    return model
