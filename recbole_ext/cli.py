"""The command line: run, tune or list any RecBole or recbole-ext model.

Installed as the ``recbole-ext`` console script, as ``python -m recbole_ext`` and as the
repository's ``run_recbole_ext.py``; all three take the same flags.

Examples::

    recbole-ext --model BPR --dataset ml-100k --epochs=5
    recbole-ext --model KNI --dataset book-crossing-kni --preset kni-book-crossing
    recbole-ext --model BPR --dataset ml-100k --embedding_init leporid
    recbole-ext --model BPR --dataset ml-100k --nproc 2
    recbole-ext --model NRP --dataset ml-100k --tune NRP --algo random --max-evals 10
    recbole-ext --list-models
    recbole-ext --recommend saved/BPR-ml-100k-....pth --users 1 2 3 --topk 10

Any other ``--key=value`` (or ``--key value``) is a config override, exactly like
RecBole's ``run_recbole.py``; values are read as Python/yaml literals (``0.01``,
``[10,20]``, ``None``, ``"{'RS': [0.8,0.1,0.1]}"``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
import warnings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run RecBole and recbole-ext models.",
        epilog="Other --key=value arguments override config keys, as in RecBole's run_recbole.py.",
    )
    parser.add_argument("--model", "-m", help="model name (ours or RecBole's)")
    parser.add_argument("--dataset", "-d", help="dataset name (ml-100k is bundled with RecBole)")
    parser.add_argument("--config_files", nargs="+", default=None, metavar="YAML",
                        help="config files, later ones win")
    parser.add_argument("--preset", help="paper preset under properties/paper/ (name or path)")
    ddp = parser.add_argument_group("distributed training (RecBole's run_recbole.py flags)")
    ddp.add_argument("--nproc", type=int, default=1, help="DDP processes on this machine")
    ddp.add_argument("--world_size", type=int, default=-1,
                     help="processes on all machines together (default: --nproc)")
    ddp.add_argument("--ip", default="127.0.0.1", help="address of the machine with --group_offset 0")
    ddp.add_argument("--port", type=int, default=None, help="its rendezvous port (default: a free one, one machine)")
    ddp.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    parser.add_argument("--results", help="path of the results JSON")
    parser.add_argument("--list-models", action="store_true", help="list all models and exit")
    parser.add_argument("--list-presets", action="store_true", help="list paper presets and exit")
    parser.add_argument("--resume", metavar="CHECKPOINT", help="continue training from a checkpoint")
    parser.add_argument("--trust-legacy-checkpoint", action="store_true",
                        help="allow loading checkpoints written by RecBole itself (full unpickling)")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks for errors")
    tune = parser.add_argument_group("hyper-parameter tuning")
    tune.add_argument("--tune", metavar="HYPER", help="search space: a RecBole .hyper file, or a shipped one by name (e.g. NRP)")
    tune.add_argument("--algo", choices=["exhaustive", "random", "bayes"], default="exhaustive")
    tune.add_argument("--max-evals", type=int, default=None,
                      help="trials at most (default: the whole grid for exhaustive, 100 otherwise)")
    tune.add_argument("--tool", choices=["hyperopt", "ray"], default="hyperopt")
    tune.add_argument("--tune-output", help="trial results file (JSON lines); resumes if it exists")
    from recbole_ext.recommend import add_recommend_arguments

    add_recommend_arguments(parser)
    return parser


class UsageError(ValueError):
    """A malformed command line."""


def parse_overrides(tokens: list[str]) -> dict:
    """``['--lr=0.1', '--stage', 'coarse,fine']`` -> ``{'lr': 0.1, 'stage': 'coarse,fine'}``."""
    from recbole_ext.config import parse_value

    overrides: dict = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise UsageError(f"unexpected argument '{token}' (config overrides look like --key=value)")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise UsageError(f"config override '{token}' has no value (use --{key}=VALUE)")
            value = tokens[i + 1]
            i += 1
        if key in overrides:
            raise UsageError(f"config key '{key}' given twice on the command line")
        overrides[key] = parse_value(value)
        i += 1
    return overrides


def print_models() -> None:
    from recbole_ext.registry import list_models

    rows = list_models()
    width = max(len(name) for name, _, _ in rows)
    print(f"{'model':<{width}}  {'family':<10}  source")
    for name, family, source in rows:
        print(f"{name:<{width}}  {family:<10}  {source}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def quiet_warnings():
    """While a command runs: known-harmless third-party warnings off, ours as one line each."""
    with warnings.catch_warnings():
        # RecBole 1.2.1 on current pandas/torch emits known-harmless FutureWarnings on every run
        # (chained fillna in dataset.py, torch.cuda.amp.GradScaler)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # ray 2.6.3 (RecBole's pin) imports pkg_resources; nothing a user can act on
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.showwarning = _show_warning
        yield


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if args.list_models:
        print_models()
        return 0
    if args.list_presets:
        from recbole_ext.config import available_presets

        print("\n".join(available_presets()))
        return 0
    overrides = parse_overrides(unknown)
    if args.recommend or args.users or args.users_file or args.all_users or args.pairs:
        from recbole_ext.recommend import recommend_main

        return recommend_main(args, overrides)
    from recbole_ext.config import parse_value

    # without --recommend, --topk and --output are config keys (RecBole's topk, RNNCCE's output)
    for key in ("topk", "output"):
        if getattr(args, key) is not None:
            overrides[key] = parse_value(getattr(args, key))
    if args.trust_legacy_checkpoint:
        overrides["trust_legacy_checkpoint"] = True
    common = {"model": args.model, "dataset": args.dataset, "config_file_list": args.config_files,
              "preset": args.preset}
    if args.resume and args.tune:
        raise UsageError("--resume cannot be combined with --tune")
    if args.max_evals is not None and args.max_evals < 1:
        raise UsageError(f"--max-evals must be a positive int. Got {args.max_evals} instead.")
    if args.tune:
        from recbole_ext.tuning import tune

        tune(hyper_file=args.tune, algo=args.algo, max_evals=args.max_evals, tool=args.tool,
             output=args.tune_output, config_dict=overrides, **common)
        return 0
    torchrun = torchrun_ranks()
    if torchrun:  # one process of a torchrun launch: the rendezvous is torchrun's (env://)
        from recbole_ext.quick_start import run_ddp_process

        result = run_ddp_process(config_dict={**overrides, **torchrun}, results_path=args.results,
                                 resume_file=args.resume, **common)
        if torchrun["local_rank"] + torchrun["offset"] != 0:
            return 0  # rank 0 reports
    elif args.nproc > 1 or args.world_size > 1:
        from recbole_ext.quick_start import run_recbole_ext_distributed

        result = run_recbole_ext_distributed(
            args.nproc, config_dict=overrides, results_path=args.results, resume_file=args.resume,
            world_size=args.world_size if args.world_size > 0 else None, ip=args.ip, port=args.port,
            group_offset=args.group_offset, **common)
    else:
        from recbole_ext.quick_start import run_recbole_ext

        result = run_recbole_ext(config_dict=overrides, results_path=args.results,
                                 resume_file=args.resume, **common)
    print_result_table(result)
    return 0


def torchrun_ranks() -> dict | None:
    """This process's DDP keys when torchrun started it (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
    ``LOCAL_WORLD_SIZE`` in the environment), else None."""
    import os

    if "LOCAL_RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    local_rank, rank = int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"])
    return {"local_rank": local_rank, "offset": rank - local_rank, "world_size": int(os.environ["WORLD_SIZE"]),
            "nproc": int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])), "init_method": "env://",
            "ip": os.environ.get("MASTER_ADDR", "127.0.0.1"), "port": int(os.environ.get("MASTER_PORT", "0"))}


def print_result_table(result: dict) -> None:
    from recbole.utils import dict2str

    print(f"model={result['model']} dataset={result['dataset']} preset={result['preset']} "
          f"params={result['n_params']} fit={result['timings']['fit_seconds']}s")
    print(f"best valid : {dict2str(result['best_valid_result'] or {})}")
    print(f"test result: {dict2str(result['test_result'] or {})}")
    if result.get("results_file"):
        print(f"results    : {result['results_file']}")


def _expected_errors() -> tuple[type[BaseException], ...]:
    from recbole_ext.checkpoint import LegacyCheckpointError
    from recbole_ext.config import ConfigError
    from recbole_ext.data import DatasetNotFoundError
    from recbole_ext.registry import UnknownModelError

    return (UsageError, ConfigError, UnknownModelError, DatasetNotFoundError,
            LegacyCheckpointError, ValueError, KeyError, FileNotFoundError)


def run(argv: list[str] | None = None) -> int:
    """:func:`main` with the CLI's error contract: an expected error is one line on stderr and
    exit status 2, an interrupt 130, anything else a traceback and 1 (``--traceback`` shows the
    stack of expected errors too)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        with quiet_warnings():
            return main(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `--list-models | head`
        return 0
    except Exception as err:  # noqa: BLE001 - turned into a one-line error below
        if "--traceback" in argv or not isinstance(err, _expected_errors()):
            traceback.print_exc()
            return 1
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
