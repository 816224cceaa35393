"""Run, tune and reload any model (ours or RecBole's) through recbole-ext's pipeline.

This mirrors ``recbole.quick_start`` but uses our Config, registry, dataset checks and
checkpoint-safe trainers, and never imports ``recbole.quick_start`` (which imports ray
at module level and loads checkpoints in a way torch >= 2.6 rejects).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from logging import getLogger
from pathlib import Path
from typing import Any

import torch
from recbole.utils import init_logger, init_seed

from recbole_ext.checkpoint import load_checkpoint, load_model_state
from recbole_ext.config import Config, config_from_checkpoint
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.model.repairs import complete_recbole_model
from recbole_ext.registry import get_model, get_trainer
from recbole_ext.utils import global_rank, to_plain

RESULT_KEYS = ("model", "best_valid_score", "valid_score_bigger", "best_valid_result", "test_result")


def _make_output_folders(config, with_trainer: bool) -> None:
    # RecBole's logger and trainer create ./log/<Model> and checkpoint_dir with a check-then-mkdir
    # that races when DDP ranks start together (FileExistsError in whichever rank loses); create
    # them first, idempotently, so RecBole's check always finds them.
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    if with_trainer:
        os.makedirs(config["checkpoint_dir"], exist_ok=True)


def build_model(config, train_dataset) -> torch.nn.Module:
    """Instantiate the model on the training split and complete what RecBole leaves missing
    (:func:`recbole_ext.model.repairs.complete_recbole_model`)."""
    return complete_recbole_model(get_model(config["model"])(config, train_dataset).to(config["device"]))


def initialise_embeddings(model: torch.nn.Module, config, train_dataset) -> dict | None:
    """Apply ``embedding_init`` (LE / LEPORID) when the config asks for it; its report or None."""
    if config["embedding_init"] in (None, "default"):
        return None
    from recbole_ext.model.init import apply_embedding_init

    return apply_embedding_init(model, train_dataset, config)


class RunOutputs:
    """What a run writes before training (RecBole's log file and tensorboard folder, the folders
    that hold them and the checkpoint), removed again by :meth:`remove` when the run fails before
    its first epoch, so that a bad input leaves nothing half-written behind.

    The log file is recognised as the one file new in ``log/<Model>/``; its tensorboard folder
    carries the same name (RecBole names both from the log file).
    """

    def __init__(self, config) -> None:
        self.model_logs = Path("log", config["model"])
        self.folders = [Path("log"), self.model_logs, Path("log_tensorboard"), Path(config["checkpoint_dir"])]
        self.existed = {folder: folder.is_dir() for folder in self.folders}
        self.old_logs = set(self.model_logs.iterdir()) if self.model_logs.is_dir() else set()
        self.old_handlers = list(logging.getLogger().handlers)

    def remove(self, trainer: Any = None) -> None:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h not in self.old_handlers]:
            handler.close()
            root.removeHandler(handler)
        if trainer is not None and getattr(trainer, "tensorboard", None) is not None:
            trainer.tensorboard.close()
        new_logs = set(self.model_logs.iterdir()) - self.old_logs if self.model_logs.is_dir() else set()
        for log_file in new_logs:
            shutil.rmtree(Path("log_tensorboard", log_file.stem), ignore_errors=True)
            log_file.unlink(missing_ok=True)
        for folder in reversed(self.folders):  # innermost first
            if not self.existed[folder] and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


@dataclass
class PreparedRun:
    """Everything a run needs before ``trainer.fit``, built by :func:`prepare_run`."""

    config: Any
    dataset: Any
    train_data: Any
    valid_data: Any
    test_data: Any
    model: torch.nn.Module
    trainer: Any = None
    data_seconds: float = 0.0
    init_report: dict | None = None
    outputs: RunOutputs | None = None


def prepare_run(model: str | None = None, dataset: str | None = None,
                config_file_list: list[str] | None = None, config_dict: dict | None = None,
                preset: str | None = None, *, config: Any = None, checkpoint: dict | None = None,
                resume_file: str | None = None, with_trainer: bool = True,
                data: tuple | None = None) -> PreparedRun:
    """The one run set-up: Config -> seed -> logger -> dataset -> split -> model (with its
    embedding initialiser) -> trainer.

    Args:
        model, dataset, config_file_list, config_dict, preset: see :class:`recbole_ext.Config`;
            ignored when ``config`` is given.
        config: a ready Config (e.g. rebuilt from a checkpoint).
        checkpoint: a loaded checkpoint whose weights the model receives (no initialiser runs).
        resume_file: a checkpoint of the same model to continue training from.
        with_trainer: build the trainer (False: data and model only, e.g. for inference).
        data: ``(dataset, train_data, valid_data, test_data)`` of an earlier ``prepare_run``
            with the same data settings, reused instead of loaded again.
    """
    start = time.perf_counter()
    if config is None:
        config = Config(model=model, dataset=dataset, config_file_list=config_file_list,
                        config_dict=config_dict, preset=preset)
    outputs = RunOutputs(config)
    trainer = None
    try:
        init_seed(config["seed"], config["reproducibility"])
        _make_output_folders(config, with_trainer)
        _start_logging(config)
        dataset_obj, train_data, valid_data, test_data = data or _load_data(config)
        data_seconds = time.perf_counter() - start
        init_seed(config["seed"] + global_rank(config), config["reproducibility"])
        model_obj, init_report = _build_run_model(config, train_data._dataset, checkpoint)
        if with_trainer:
            trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model_obj)
            if resume_file:
                trainer.resume_checkpoint(resume_file)
    except BaseException:
        outputs.remove(trainer)
        raise
    return PreparedRun(config, dataset_obj, train_data, valid_data, test_data, model_obj, trainer,
                       data_seconds, init_report, outputs)


def _start_logging(config) -> None:
    init_logger(config)
    logger = getLogger()
    if isinstance(config, Config):
        logger.info("config layers, lowest first: " + " < ".join(
            ["RecBole defaults", *config.loaded_files, "config_dict/command line"]))
    logger.info(config)


def _load_data(config) -> tuple:
    """``(dataset, train_data, valid_data, test_data)``."""
    dataset = create_dataset(config)
    getLogger().info(dataset)
    return (dataset, *data_preparation(config, dataset))


def _build_run_model(config, train_dataset, checkpoint: dict | None) -> tuple[torch.nn.Module, dict | None]:
    """The model with the checkpoint's weights, or with its embedding initialiser applied."""
    model = build_model(config, train_dataset)
    init_report = None
    if checkpoint is None:
        init_report = initialise_embeddings(model, config, train_dataset)
    else:
        load_model_state(model, checkpoint, dataset=config["dataset"])
    getLogger().info(model)
    return model, init_report


@dataclass
class RunResult:
    """What one run reports: written as the results JSON and returned by :func:`run_recbole_ext`."""

    model: str
    dataset: str
    preset: str | None
    best_valid_score: float | None
    valid_score_bigger: bool
    best_valid_result: dict | None
    test_result: dict | None
    n_params: int
    timings: dict
    valid_history: list
    checkpoint: str | None
    device: str
    world_size: int
    config_files: list[str]
    config: dict
    memory: dict | None = None
    extra: dict = field(default_factory=dict)
    results_file: str | None = None

    @classmethod
    def collect(cls, run: PreparedRun, best_valid_score: Any, best_valid_result: Any,
                test_result: Any, seconds: dict[str, float], saved: bool) -> "RunResult":
        config, trainer = run.config, run.trainer
        epoch_seconds = getattr(trainer, "epoch_seconds", [])  # decision-tree trainers keep none
        timings = {name: round(value, 3) for name, value in seconds.items()} | {
            "epochs_trained": len(epoch_seconds),
            "resumed_at_epoch": getattr(trainer, "start_epoch", 0),
            "train_epoch_seconds": [round(s, 3) for s in epoch_seconds],
            "valid_seconds": [round(s, 3) for s in getattr(trainer, "valid_seconds", [])],
        }
        memory = run.model.memory_report() if hasattr(run.model, "memory_report") else None
        extra = trainer.extra_results() if hasattr(trainer, "extra_results") else {}
        return cls(
            model=config["model"], dataset=config["dataset"], preset=config["preset"],
            best_valid_score=to_plain(best_valid_score), valid_score_bigger=config["valid_metric_bigger"],
            best_valid_result=to_plain(best_valid_result), test_result=to_plain(test_result),
            n_params=sum(p.numel() for p in run.model.parameters()), timings=timings,
            valid_history=[list(entry) for entry in getattr(trainer, "valid_history", [])],
            checkpoint=trainer.saved_model_file if saved else None, device=str(config["device"]),
            world_size=config["world_size"] or 1, config_files=config.loaded_files,
            config=to_plain(config.final_config_dict), memory=to_plain(memory), extra=to_plain(extra))

    def to_dict(self) -> dict:
        """The flat record of the results JSON: ``memory`` only when the model reports it, and
        the trainer's extra entries at the top level."""
        record = asdict(self)
        extra = record.pop("extra")
        results_file = record.pop("results_file")
        if record["memory"] is None:
            del record["memory"]
        record.update(extra)
        if results_file is not None:
            record["results_file"] = results_file
        return record


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
            ``<checkpoint_dir>/results/<model>-<dataset>-<time>-<pid>-<token>.json``, the
            checkpoint's token).
        resume_file: a checkpoint of the same model to continue training from.
        queue: for DDP workers, a queue that receives rank 0's result.

    Returns:
        :meth:`RunResult.to_dict`: model, dataset, preset, best_valid_score,
        valid_score_bigger, best_valid_result, test_result, n_params, timings, valid_history,
        checkpoint, device, world_size, config_files, config, ``memory`` when the model defines
        ``memory_report()``, the trainer's ``extra_results()`` and results_file.
    """
    start = time.perf_counter()
    run = prepare_run(model, dataset, config_file_list, config_dict, preset, resume_file=resume_file)
    config, trainer = run.config, run.trainer

    fit_start = time.perf_counter()
    try:
        best_valid_score, best_valid_result = trainer.fit(
            run.train_data, run.valid_data, saved=saved, show_progress=config["show_progress"])
    except BaseException:
        if not getattr(trainer, "epoch_seconds", True):  # failed before its first epoch ended
            run.outputs.remove(trainer)
        raise
    fit_seconds = time.perf_counter() - fit_start
    test_start = time.perf_counter()
    test_result = trainer.evaluate(run.test_data, load_best_model=saved,
                                   show_progress=config["show_progress"])
    test_seconds = time.perf_counter() - test_start
    seconds = {"data_seconds": run.data_seconds, "fit_seconds": fit_seconds,
               "test_seconds": test_seconds, "total_seconds": time.perf_counter() - start}
    result = RunResult.collect(run, best_valid_score, best_valid_result, test_result, seconds, saved)

    if global_rank(config) == 0:
        logger = getLogger()
        result.results_file = write_results(result.to_dict(), results_path or _default_results_path(config, trainer))
        logger.info(f"best valid : {best_valid_result}")
        logger.info(f"test result: {test_result}")
        logger.info(f"results written to {result.results_file}")
    record = result.to_dict()
    if queue is not None and config["local_rank"] == 0:
        queue.put(record)
    return record


def _default_results_path(config, trainer) -> str:
    token = getattr(trainer, "run_token", None) or f"{os.getpid()}-{time.time_ns()}"
    return os.path.join(config["checkpoint_dir"], "results", f"{config['model']}-{config['dataset']}-{token}.json")


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
    """RecBole ``HyperTuning`` objective: one full run, the result dict HyperTuning expects.

    Inside a Ray Tune trial (RecBole's ``run_hyper.py --tool Ray`` runs the objective as a Ray
    trainable) it also reports the test metrics to Ray, as RecBole's own objective does, so Ray
    can rank the trials (e.g. ``get_best_trial("recall@10", "max")``).
    """
    result = run_recbole_ext(config_dict=config_dict, config_file_list=config_file_list, saved=saved)
    record = {key: result[key] for key in RESULT_KEYS} | {"results_file": result.get("results_file")}
    test = result["test_result"] or {}
    if report_to_ray_tune(test):
        # Ray reports a function trainable's return value as its last result too: keep the
        # metrics there, or get_best_trial(metric, scope="last") finds none
        record |= test
    return record


def report_to_ray_tune(metrics: dict) -> bool:
    """Report ``metrics`` to the Ray Tune trial this process runs; False (nothing done) outside one."""
    if "ray" not in sys.modules:  # no trial can be running in a process that never imported Ray
        return False
    from ray.air import session
    from ray.air._internal.session import _get_session

    if _get_session(warn=False) is None:
        return False
    session.report(dict(metrics))
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ddp_process(**kwargs) -> dict:
    """:func:`run_recbole_ext` as one process of a DDP group, then the group torn down."""
    import torch.distributed as dist

    try:
        result = run_recbole_ext(**kwargs)
        dist.barrier()  # a rank that tears gloo down while another still uses it aborts the other
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _ddp_worker(rank: int, kwargs: dict, queue: Any) -> None:
    kwargs = dict(kwargs)
    kwargs["config_dict"] = dict(kwargs["config_dict"], local_rank=rank)
    run_ddp_process(**kwargs, queue=queue)


def run_recbole_ext_distributed(nproc: int, model: str | None = None, dataset: str | None = None,
                                config_file_list: list[str] | None = None,
                                config_dict: dict | None = None, saved: bool = True,
                                preset: str | None = None, results_path: str | None = None,
                                resume_file: str | None = None, world_size: int | None = None,
                                ip: str | None = None, port: int | None = None,
                                group_offset: int = 0) -> dict:
    """Run ``nproc`` DDP processes on this machine, ranks ``group_offset .. group_offset + nproc - 1``
    of a group of ``world_size`` (default ``nproc``), as RecBole's ``run_recbole.py`` flags do.

    Several machines: start the same command on each with the same ``world_size``, ``ip`` and
    ``port`` (the address of the machine with ``group_offset`` 0) and consecutive offsets. Only
    global rank 0 writes the checkpoint and the results file; ``checkpoint_dir`` must be a folder
    every machine sees, because every rank loads the best checkpoint for the test.

    The caller's ``__main__`` must be import-safe (``if __name__ == "__main__":``): workers
    are started with the ``spawn`` method.

    Returns:
        The result of this machine's first process (with ``results_file`` on global rank 0).
    """
    import torch.multiprocessing as mp

    world_size = world_size or nproc
    if world_size < nproc + group_offset:
        raise ValueError(f"--world_size {world_size} is smaller than --group_offset {group_offset} "
                         f"+ --nproc {nproc}: the ranks of this machine would not fit in the group")
    if world_size > nproc and port is None:
        raise ValueError(f"--world_size {world_size} spans several machines: give every machine the same "
                         "--ip (the machine with --group_offset 0) and --port")
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    ddp = {"nproc": nproc, "world_size": world_size, "offset": group_offset, "ip": ip or "127.0.0.1",
           "port": port or _free_port()}
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
    run = prepare_run(config=config_from_checkpoint(ckpt), checkpoint=ckpt, with_trainer=False)
    return run.config, run.model, run.dataset, run.train_data, run.valid_data, run.test_data
