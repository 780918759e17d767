"""``genreclf`` command line: one subcommand per MLproject entry point (the only argument parser).

Each subcommand's options are generated from the config dataclasses of its sections, so the CLI,
the MLproject file and the experiment YAMLs always speak the same parameter names.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from dataclasses import fields

from genreclf.commands import commands, mlproject_text
from genreclf.config import SECTIONS, Resolved, resolve
from genreclf.errors import UserError
from genreclf.params import redact
from genreclf.progress import quiet_library_bars
from genreclf.serving.payloads import predict_files
from genreclf.tracking.project import name_project_run, tag_project_failure


def _add_section_options(parser: argparse.ArgumentParser, sections: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for name in sections:
        group = parser.add_argument_group(f"{name} parameters")
        cls = SECTIONS[name]
        for f in fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            default = getattr(cls(), f.name)
            flags = dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}"])
            group.add_argument(*flags, dest=f.name, default=None, metavar=type(default).__name__.upper(),
                               help=f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%"))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genreclf", allow_abbrev=False,
                                     description="Album-cover -> music-genre classification "
                                     "as a reproducible MLflow project.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in commands().items():
        sections, help_ = cmd.sections, cmd.help
        # no abbreviations: `mlflow run -P epoch=3` must be an error naming --epoch, not a silent --epochs
        p = sub.add_parser(name, help=help_, description=help_, allow_abbrev=False,
                           aliases=[name.replace("_", "-")] if "_" in name else [])
        p.set_defaults(command=name)
        p.add_argument("--config", default=None, help="experiment YAML (e.g. experiments/quickstart.yaml); "
                       "explicit options override it")
        _add_section_options(p, sections)
    p = sub.add_parser("predict", help="predict the genre of local cover files with a logged/registered model")
    p.add_argument("--model", default="models:/album-genre-cnn@champion", help="model URI")
    p.add_argument("--top", type=int, default=3, help="probabilities to show per cover")
    p.add_argument("files", nargs="+", help="image files")
    sub.add_parser("mlproject", help="print the MLproject file generated from the command table and the config")
    return parser


def _disk_full(exc: BaseException | None) -> BaseException | None:
    """The link of the exception chain that says the disk is full, if any."""
    while exc is not None:
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "disk is full" in str(exc) \
                or "No space left" in str(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    quiet_library_bars()  # before anything downloads artifacts (MLflow reads the setting per download)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "matplotlib", "PIL", "httpx", "alembic", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:  # it logs every failed statement with its whole chained traceback, then raises
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        if args.command == "predict":
            return predict_files(args.model, args.files, args.top)
        if args.command == "mlproject":
            print(mlproject_text())
            return 0
        cmd = commands()[args.command]
        name_project_run(args.command)  # under `mlflow run`: never leave the run with a random name
        explicit = {k: v for k, v in vars(args).items() if k not in {"command", "config", "verbose"}}
        resolved = Resolved(args.command, resolve(args.config, explicit, *cmd.sections))
        module, func = cmd.target.split(":")
        result = getattr(importlib.import_module(module), func)(resolved)
        return 0 if result is None or isinstance(result, (dict, str)) else int(result)
    except UserError as exc:
        # our own errors carry actionable messages; show them without a library traceback
        print(f"genreclf {args.command}: error: {exc}", file=sys.stderr)
        tag_project_failure(exc)
        return 2
    except Exception as exc:
        full = _disk_full(exc)
        if full is None:
            raise  # a bug: keep its traceback
        # a full disk is the environment's, not a bug: one line, not 16 chained tracebacks
        why = redact(next((ln for ln in str(full).splitlines() if "full" in ln or "space" in ln), str(full)))[:200]
        store = redact(os.environ.get("MLFLOW_TRACKING_URI", "mlflow.db, mlruns/"))  # a URI may hold a password
        print(f"genreclf {args.command}: error: the disk is full ({why}); "
              f"free space for the MLflow store ({store}) "
              f"and the cache, then rerun; the run is marked FAILED (by the next genreclf command if the store "
              f"cannot be written now)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
