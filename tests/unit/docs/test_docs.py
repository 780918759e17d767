"""The documentation against the code: README.md and docs/*.md.

* every dotted name ``genreclf.<module>[.<name>]`` resolves (the module imports, the name exists);
* every repository path named (``genreclf/...``, ``tests/...``, ``experiments/...``, ``tools/...``,
  ``docs/...``) exists;
* every ``--option`` is an option of the ``genreclf`` CLI (the one of that subcommand when the line runs
  ``genreclf <command>``), or one of the other programs' options listed in ``FOREIGN_OPTIONS``;
* every ``-P name=value`` is a parameter of its entry point in MLproject (``main`` without ``-e``);
* every fenced ``python`` / ``bash`` block is preceded by a marker comment (docs/development.md,
  "Documentation"): ``<!-- docs: run -->`` - the block is run here, in this process: a bash block may
  hold only ``genreclf`` commands (run through ``genreclf.cli.main``), a python block is executed;
  ``<!-- docs: example (why it is not run) -->`` - shown only, with the reason (or, once near the top of a
  document whose blocks all need servers or clusters, ``<!-- docs: all examples (why) -->``);
* the README stays a user's page: at most ~200 lines.

No MLflow store, subprocess or socket: fast, like the rest of tests/unit.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

from genreclf.cli import get_args_parser, main

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 210

# options of programs other than genreclf that the docs show (mlflow, torchrun, pip, pytest, ...)
FOREIGN_OPTIONS = {
    "env-manager", "experiment-name", "backend-store-uri", "artifacts-destination", "host", "port", "workers",
    "serve-artifacts", "default-artifact-root", "app-name", "no-conda", "build-image", "allowed-hosts",
    "enable-workspaces", "cors-allowed-origins",  # mlflow
    "standalone", "nproc-per-node", "nnodes", "rdzv-backend", "rdzv-endpoint", "rdzv-id", "node-rank",  # torchrun
    "master",  # spark-submit
    "upgrade", "extra-index-url", "index-url", "no-deps", "find-links",  # pip
    "same_gpu_probe", "ddp", "devices", "per_genre",  # tools/gpu_check.py
    "timeout", "durations", "deselect",  # pytest
    "help", "version",
}
# the error old models raise quotes a module that no longer exists: the docs may quote it
QUOTED_ERROR = re.compile(r"No module named '[\w.]+'")

DOTTED = re.compile(r"(?<![\w./-])genreclf(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w./-])((?:genreclf|tests|experiments|tools|docs)/[\w./-]*[\w/])(?![\w./<-])")
OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9_-]*)")
PARAM = re.compile(r"(?<![\w-])-P\s+([a-z_][a-z0-9_]*)=")
FENCE = re.compile(r"^```(\w*)\s*$")
MARK_RUN = "<!-- docs: run -->"
MARK_EXAMPLE = re.compile(r"^<!-- docs: example \(.+\) -->$")
MARK_ALL_EXAMPLES = re.compile(r"^<!-- docs: all examples \(.+\) -->$", re.M)


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks(path: Path) -> list[tuple[int, str, str, str]]:
    """(line number, language, marker line before the fence, body) of every fenced block."""
    lines, out, i = text_of(path).splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1) is not None and lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            out.append((i + 1, m.group(1), lines[k].strip() if k >= 0 else "", "\n".join(lines[i + 1:j])))
            i = j + 1
        else:
            i += 1
    return out


def command_lines(path: Path) -> list[tuple[int, str]]:
    """Each line of a document, with a code block's backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, line in enumerate(text_of(path).splitlines(), 1):
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def cli_options() -> tuple[set[str], dict[str, set[str]]]:
    """Every option of the genreclf parser, and each subcommand's own."""
    parser = get_args_parser()
    top = {o[2:] for a in parser._actions for o in a.option_strings if o.startswith("--")}
    per: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                per[name] = top | {o[2:] for a in sub._actions for o in a.option_strings if o.startswith("--")}
    return top.union(*per.values()), per


def mlproject_params() -> dict[str, set[str]]:
    params: dict[str, set[str]] = {}
    entry = None
    for line in text_of(ROOT / "MLproject").splitlines():
        if m := re.match(r"^  ([a-z_]+):$", line):
            entry = m.group(1)
            params[entry] = set()
        elif entry and (m := re.match(r"^    #   ([a-z_]+): ", line)):
            params[entry].add(m.group(1))
    return params


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_dotted_genreclf_name_resolves(path):
    bad = sorted({d for d in DOTTED.findall(QUOTED_ERROR.sub("", text_of(path))) if not resolves(d)})
    assert not bad, f"{rel(path)} names what does not exist: {bad}"


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_repository_path_exists(path):
    missing = sorted({p for p in PATH.findall(text_of(path))
                      if not any(c in p for c in "<*{") and not (ROOT / p.rstrip(".")).exists()})
    assert not missing, f"{rel(path)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_option_exists(path):
    every, per = cli_options()
    bad = []
    for n, line in command_lines(path):
        for seg in re.split(r"\||&&|;|`", line):  # a command per segment
            m = re.search(r"(?<![\w/-])genreclf\s+([a-z_-]+)", seg)
            allowed = per.get(m.group(1).replace("-", "_"), every) if m else every | FOREIGN_OPTIONS
            if m and "genreclf.cli" not in seg:
                seg = seg[m.end():].split("#")[0]
            bad += [f"line {n}: --{o}" for o in OPTION.findall(seg) if o not in allowed and o.replace("-", "_")
                    not in allowed]
    assert not bad, f"{rel(path)}: options the CLI does not have: {bad}"


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_mlflow_run_parameter_exists(path):
    params = mlproject_params()
    bad = []
    for n, line in command_lines(path):
        if not PARAM.search(line):
            continue
        m = re.search(r"(?<![\w-])-e\s+([a-z_]+)", line)
        entry = m.group(1) if m else "main"
        known = params.get(entry, set()).union({"config"}) if "mlflow run" in line else set().union(
            *params.values(), {"config"})
        bad += [f"line {n}: -P {p}= ({entry})" for p in PARAM.findall(line) if p not in known]
    assert not bad, f"{rel(path)}: parameters MLproject does not declare: {bad}"


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_code_block_is_run_or_marked_as_an_example(path):
    if MARK_ALL_EXAMPLES.search(text_of(path)):
        return
    unmarked = [f"line {n} ({lang})" for n, lang, mark, _ in blocks(path)
                if lang in {"python", "bash", "sh"} and mark != MARK_RUN and not MARK_EXAMPLE.match(mark)]
    assert not unmarked, (f"{rel(path)}: code blocks without `{MARK_RUN}` or `<!-- docs: example (why) -->` "
                          f"on the line before the fence: {unmarked}")


RUNNABLE = [(path, n, lang, body) for path in DOCS for n, lang, mark, body in blocks(path) if mark == MARK_RUN]


@pytest.mark.parametrize(("path", "n", "lang", "body"), RUNNABLE, ids=[f"{rel(p)}:{n}" for p, n, *_ in RUNNABLE])
def test_runnable_blocks_run(path, n, lang, body, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if lang == "python":
        exec(compile(body, f"{rel(path)}:{n}", "exec"), {"__name__": "__docs__"})
        return
    for line in body.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line.split(">")[0])
        assert argv[0] == "genreclf", f"{rel(path)}:{n}: a runnable bash block holds only genreclf commands: {line}"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                code = main(argv[1:])
            except SystemExit as exc:  # --help
                code = exc.code or 0
        assert code == 0, f"{rel(path)}:{n}: `{line}` exited {code}"
        assert out.getvalue().strip(), f"{rel(path)}:{n}: `{line}` printed nothing"


def test_the_mlproject_block_prints_the_committed_mlproject():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["mlproject"]) == 0
    assert out.getvalue() == text_of(ROOT / "MLproject")


def test_the_readme_is_a_users_page():
    lines = text_of(ROOT / "README.md").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
