"""What the docs show works as written, as far as it can be checked without running it.

- Every `distilserve` command in a code block of the docs parses with the real CLI parser: a
  renamed or dropped flag, subcommand or choice that a doc still shows fails here. A shown form is
  expanded the way a reader reads it: `[--flag value]` is taken with its contents, and `a|b|c` is
  every alternative. Running the main paths is the e2e tier's job.
- Every `make X` the docs show is a Makefile target.
- The README's serve.yaml examples are valid `ServeConfig`s, BENCH_DISTILL.md's recipe a valid
  `DistillConfig` (both refuse unknown keys by name).
"""

from __future__ import annotations

import functools
import itertools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from distilserve.cli.main import build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "deploy/README.md", "BENCHMARKS.md", "BENCH_BATCH.md", "BENCH_DISTILL.md",
        "BENCH_ROLLBACK.md")
_COMMAND = re.compile(r"(\.venv/bin/)?distilserve\s")


def code_lines(text: str) -> Iterator[str]:
    """The lines of fenced (```) and indented (4 spaces) code blocks, `\\` continuations joined."""
    fenced, pending = False, ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or raw.startswith("    ")):
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        yield line


def expand(line: str) -> list[list[str]]:
    """argv lists (without the program) for a shown command: optional parts in, one per alternative."""
    words = shlex.split(line, comments=True)[1:]
    choices = []
    for w in words:
        w = w.removeprefix("[").removesuffix("]")
        choices.append(w.split("|") if "|" in w and not w.startswith("-") else [w])
    return [list(argv) for argv in itertools.product(*choices)]


def doc_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in code_lines((REPO_ROOT / doc).read_text()):
            if _COMMAND.match(line):
                found += [(f"{doc}: {' '.join(argv)}", argv) for argv in expand(line)]
    return found


COMMANDS = doc_commands()


@functools.cache
def parser():  # noqa: ANN201 - an ArgumentParser; built once (about 15 ms), parse_args leaves it as it was
    return build_parser()


@pytest.mark.parametrize(("shown", "argv"), COMMANDS, ids=[s for s, _ in COMMANDS])
def test_shown_command_parses(shown: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse's way of refusing; its message names the bad part
        pytest.fail(f"{shown}\n  is refused by the CLI (exit {e.code}): {capsys.readouterr().err.strip()}")
    assert callable(args.func), shown


def test_the_docs_show_the_main_commands() -> None:
    # The collector finds what it should (a broken one would make the test above vacuous).
    shown = {argv[0] for _, argv in COMMANDS}
    assert {"serve", "up", "down", "rollout", "distill", "batch", "versions", "compile", "deploy-config"} <= shown
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize(("line", "argvs"), [
    ("distilserve down", [["down"]]),
    (".venv/bin/distilserve serve [--port 8000]   # note", [["serve", "--port", "8000"]]),
    ("distilserve serve [--backend triton|torch]", [["serve", "--backend", "triton"], ["serve", "--backend", "torch"]]),
    ("distilserve rollout a|b --model m", [["rollout", "a", "--model", "m"], ["rollout", "b", "--model", "m"]]),
    ("distilserve x '--y=a|b'", [["x", "--y=a|b"]]),  # a flag's own value is not split
])
def test_expand(line: str, argvs: list[list[str]]) -> None:
    assert expand(line) == argvs


def test_code_lines_join_continuations_and_skip_prose() -> None:
    text = "prose distilserve down\n```\ndistilserve batch run \\\n  --model m\n```\n    distilserve down\n"
    assert list(code_lines(text)) == ["distilserve batch run --model m", "distilserve down"]


def test_every_make_target_the_docs_show_is_in_the_makefile() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE))
    shown = {}
    for doc in DOCS:
        text = (REPO_ROOT / doc).read_text()
        names = re.findall(r"`make ([a-z][\w-]*)", text)
        names += [line.split()[1] for line in code_lines(text) if re.match(r"make [a-z]", line)]
        shown.update({name: doc for name in names})
    assert {"serve", "test"} <= set(shown)
    assert {n: d for n, d in shown.items() if n not in targets} == {}


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_the_readmes_serve_yaml_examples_are_valid_serve_configs() -> None:
    from serving.config import ServeConfig

    blocks = yaml_blocks((REPO_ROOT / "README.md").read_text())
    assert len(blocks) >= 2  # model_instances/torch_threads, shedding
    for block in blocks:
        cfg = ServeConfig.model_validate(yaml.safe_load(block))  # unknown keys are refused by name
        assert cfg.model_dump(exclude_defaults=True), block  # it sets something


def test_yaml_blocks() -> None:
    assert yaml_blocks("x\n```yaml\na: 1\n```\n```bash\nb\n```\n") == ["a: 1\n"]


def test_bench_distills_recipes_are_valid_distill_configs() -> None:
    from distill.config import DistillConfig

    blocks = yaml_blocks((REPO_ROOT / "BENCH_DISTILL.md").read_text())
    assert blocks
    for block in blocks:
        DistillConfig.model_validate(yaml.safe_load(block))  # StrictModel: unknown keys are refused
