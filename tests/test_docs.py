"""The documentation stays true: README.md and docs/ name only commands, options and links that exist.

Commands. Every line of a fenced code block (language ``bash``, ``sh``, ``shell`` or none; ``text``
blocks are printed output and are not read) is split the way a shell would (``\\`` continuations
joined, ``#`` comments dropped, ``|``, ``&&``, ``;``, ``(...)`` and ``$(...)`` separated, ``NAME=value``
prefixes skipped). Each command run by this repository's programs is checked against the real
argument parser of that program:

- ``nnunetv2_druwas ...`` (a console script of setup.py): the parser of the module the script calls;
- ``python -m MODULE ...`` (MODULE inside this repository; for a package its ``__main__``) and
  ``python FILE.py ...``: the module's ``build_parser()``, which every runnable module provides;
- ``bash FILE``: the file exists.

The subcommand must exist and every ``-x``/``--option`` must be an option string of its parser,
spelled out (argparse would accept abbreviations; the docs may not). A line without placeholders
is parsed whole with ``parse_args`` (choices, types, required arguments). A line with placeholders
is a synopsis and only its subcommand and options are checked: brackets ``[...]``, ``<...>``, ``{...}``,
``...``, or words in capitals such as ``DIR``, ``ID``, ``PRED_DIR``.

Links. Every relative Markdown link and image outside code resolves to a file or folder of the
repository, and an ``#anchor`` to a heading of the target page (GitHub's slugs). A file that is
referenced before it is committed is listed in ``PENDING`` (the test fails once it exists, so the
list cannot go stale).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import sys
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: referenced before they are committed: path -> who commits it
PENDING: dict[str, str] = {}
SHELL_LANGUAGES = {"", "bash", "sh", "shell"}
OPERATOR_CHARS = "|&;()"
SHELL_KEYWORDS = {"do", "then", "else", "elif", "time", "exec", "!"}
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"python(3(\.\d+)?)?")
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")
NUMBER = re.compile(r"-\d[\d.eE+-]*")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


# ---------------------------------------------------------------- reading Markdown

def split_fences(text: str) -> tuple[list[tuple[str, int, list[str]]], str]:
    """The fenced code blocks of ``text`` as (language, line number of the first line, lines), and the
    text outside them (code lines blanked, so line numbers stay)."""
    blocks, prose, current = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if current is None and match:
            current = (match.group(1), match.group(2).lower(), number + 1, [])
            prose.append("")
        elif current is not None and line.strip().startswith(current[0]) and not line.strip()[len(current[0]):]:
            blocks.append(current[1:])
            current = None
            prose.append("")
        elif current is not None:
            current[3].append(line)
            prose.append("")
        else:
            prose.append(line)
    return blocks, "\n".join(prose)


def logical_lines(lines: list[str], first: int) -> list[tuple[int, str]]:
    """Lines with their ``\\`` continuations joined, each with the number of its first line."""
    joined, start, parts = [], None, []
    for number, line in enumerate(lines, first):
        start = number if start is None else start
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        joined.append((start, " ".join([*parts, line]).strip()))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(parts).strip()))
    return joined


def without_comment(line: str) -> str:
    """``line`` up to an unquoted ``#`` that starts a word (a shell comment)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def commands_in(line: str) -> list[list[str]]:
    """Every simple command of a shell line as its words: split at ``|``, ``&&``, ``;``, parentheses and
    ``$(...)`` (also inside quotes), with leading ``NAME=value`` assignments and keywords dropped. A ``|``
    inside ``[...]`` is a synopsis' alternative, not a pipe."""
    lexer = shlex.shlex(without_comment(line), posix=True, punctuation_chars=OPERATOR_CHARS)
    lexer.whitespace_split, lexer.commenters = True, ""
    commands, words, depth = [], [], 0
    for token in lexer:
        if token and set(token) <= set(OPERATOR_CHARS) and not (token == "|" and depth > 0):
            commands.append(words)
            words, depth = [], 0
            continue
        if "$(" in token:  # a quoted command substitution is one word: look inside it
            commands += commands_in(token[token.index("$(") + 2:].rsplit(")", 1)[0])
        depth += token.count("[") - token.count("]")
        words.append(token)
    commands.append(words)
    result = []
    for words in commands:
        while words and (ASSIGNMENT.match(words[0]) or words[0] in SHELL_KEYWORDS):
            words = words[1:]
        if words[-1:] == ["$"]:   # the `$` of a `$(` that follows
            words = words[:-1]
        if words:
            result.append(words)
    return result


# ---------------------------------------------------------------- the programs and their parsers

def console_scripts() -> dict[str, str]:
    """setup.py's console scripts: name -> module."""
    text = (ROOT / "setup.py").read_text()
    return dict(re.findall(r"[\"']\s*([\w.-]+)\s*=\s*([\w.]+):\w+\s*[\"']", text))


def repository_packages() -> set[str]:
    """Top-level module names that live in this repository (``python -m`` of others is not ours)."""
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {
        p.stem for p in ROOT.glob("*.py")}


@lru_cache(maxsize=None)
def parser_of(target: str) -> argparse.ArgumentParser:
    """The argument parser of a module name or of a ``.py`` file of the repository: its ``build_parser()``;
    for a package, that of its ``__main__``.

    Args:
        target: a dotted module name, or a path ending in ``.py`` relative to the repository root.
    """
    if target.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"_docs_{Path(target).stem}", ROOT / target)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module   # dataclasses look their module up there
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
        if hasattr(module, "__path__"):
            module = importlib.import_module(f"{target}.__main__")
    if not hasattr(module, "build_parser"):
        raise LookupError(f"{target} has no build_parser(): give it one that returns its argparse parser")
    return module.build_parser()


def program_of(words: list[str]) -> tuple[str | None, list[str], str | None]:
    """Which of the repository's programs a command runs: (parser target, its arguments, problem).
    The target is None for commands that are not this repository's (nnUNetv2_train, pip, ...)."""
    scripts = console_scripts()
    if words[0] in scripts:
        return scripts[words[0]], words[1:], None
    if words[0] in ("bash", "sh") and len(words) > 1 and "/" in words[1]:
        return None, [], None if (ROOT / words[1]).is_file() else f"{words[1]} does not exist"
    if not PYTHON.fullmatch(words[0]) or len(words) < 2:
        return None, [], None
    if words[1] == "-m" and len(words) > 2:
        module = words[2]
        return (module if module.split(".")[0] in repository_packages() else None), words[3:], None
    if words[1].endswith(".py"):
        if not (ROOT / words[1]).is_file():
            return None, [], f"{words[1]} does not exist"
        return words[1], words[2:], None
    return None, [], None


def option_problems(parser: argparse.ArgumentParser, args: list[str], command: str) -> list[str]:
    """The subcommand and option words of ``args`` that ``parser`` does not have (exact spelling)."""
    problems, current, chosen = [], parser, False
    for word in args:
        word = word.strip("[](){}").rstrip(",")
        if word == "--":
            break
        subparsers = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if word.startswith("-") and len(word) > 1 and not NUMBER.fullmatch(word):
            name = word.split("=", 1)[0]
            if name not in current._option_string_actions:
                problems.append(f"`{command}`: {current.prog} has no option {name}")
        elif subparsers and not chosen and word not in ("", "|"):
            if word not in subparsers[0].choices:
                problems.append(f"`{command}`: {current.prog} has no subcommand {word!r} "
                                f"(it has {', '.join(subparsers[0].choices)})")
                return problems
            current, chosen = subparsers[0].choices[word], True
    return problems


def is_synopsis(args: list[str]) -> bool:
    """Whether a command line shows placeholders or optional parts rather than values."""
    return any(re.search(r"[\[\]<>{}]|\.\.\.|…", w) or PLACEHOLDER.fullmatch(w) for w in args)


def parse_problem(parser: argparse.ArgumentParser, args: list[str], command: str) -> str | None:
    """argparse's own complaint about a concrete command line, or None when it parses."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exit:
            if exit.code not in (0, None):
                return f"`{command}` does not parse: {stderr.getvalue().strip().splitlines()[-1]}"
    return None


def check_command(words: list[str], command: str) -> tuple[str | None, list[str]]:
    """Check one command: (the parser target it runs, or None; its problems)."""
    target, args, problem = program_of(words)
    if problem:
        return None, [f"`{command}`: {problem}"]
    if target is None:
        return None, []
    try:
        parser = parser_of(target)
    except (ImportError, LookupError, OSError) as e:
        return target, [f"`{command}`: cannot read the parser of {target}: {e}"]
    problems = option_problems(parser, args, command)
    if not problems and not is_synopsis(args):
        problems += filter(None, [parse_problem(parser, args, command)])
    return target, problems


def command_problems(text: str, name: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Check every command of the shell blocks of a Markdown text.

    Args:
        text: the Markdown.
        name: how problems name the file.

    Returns:
        The problems (``name:line: ...``) and every checked command as (parser target, arguments).
    """
    problems, checked = [], []
    for language, first, lines in split_fences(text)[0]:
        if language not in SHELL_LANGUAGES:
            continue
        for number, line in logical_lines(lines, first):
            try:
                commands = commands_in(line)
            except ValueError as e:
                problems.append(f"{name}:{number}: cannot split `{line}`: {e}")
                continue
            for words in commands:
                target, found = check_command(words, " ".join(words))
                problems += [f"{name}:{number}: {p}" for p in found]
                if target is not None:
                    checked.append((target, program_of(words)[1]))
    return problems, checked


# ---------------------------------------------------------------- links

def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text (links as their text, no backticks or emphasis),
    lower case, punctuation other than ``-`` and ``_`` removed, spaces as ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown page: its headings' slugs (repeats numbered as GitHub does) and
    ``<a name=...>``/``<a id=...>``."""
    blocks, prose = split_fences(path.read_text())
    seen: dict[str, int] = {}
    found = set(HTML_ID.findall(prose))
    for line in prose.splitlines():
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return found


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links and images of a Markdown page (outside code) that lead nowhere.

    Args:
        path: the Markdown page.
        root: the repository root (``PENDING`` paths are relative to it).
    """
    prose = CODE_SPAN.sub("", split_fences(path.read_text())[1])
    problems = []
    for number, line in enumerate(prose.splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue   # https:, mailto:, ...
            file_part, _, anchor = unquote(target).partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            name = f"{path.relative_to(root)}:{number}: {target}"
            try:
                relative = resolved.relative_to(root).as_posix()
            except ValueError:
                problems.append(f"{name}: leads outside the repository")
                continue
            if not resolved.exists():
                if relative not in PENDING:
                    problems.append(f"{name}: {relative} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{name}: {relative} has no heading #{anchor}")
    return problems


# ---------------------------------------------------------------- the tests

def test_every_documented_command_exists():
    problems, checked = [], []
    for path in DOCS:
        found, commands = command_problems(path.read_text(), str(path.relative_to(ROOT)))
        problems += found
        checked += commands
    assert not problems, "commands in the docs that the parsers refuse:\n" + "\n".join(problems)
    # the check must have seen the commands (a splitter that finds nothing would pass vacuously)
    assert {target for target, _ in checked} >= {"nnunetv2_druwas.cli", "analysis.tables"}
    assert len(checked) >= 30, checked


def test_every_subcommand_and_option_is_documented():
    """The other direction: what the parsers offer is named somewhere in README.md or docs/."""
    text = "\n".join(p.read_text() for p in DOCS)
    checked = [c for p in DOCS for c in command_problems(p.read_text(), p.name)[1]]
    missing = []
    cli = parser_of(console_scripts()["nnunetv2_druwas"])
    (subcommands,) = [a for a in cli._actions if isinstance(a, argparse._SubParsersAction)]
    shown = {args[0] for target, args in checked if target == "nnunetv2_druwas.cli" and args}
    missing += [f"nnunetv2_druwas {name}: no command of the docs runs it" for name in subcommands.choices
                if name not in shown]
    parsers = {f"nnunetv2_druwas {name}": p for name, p in subcommands.choices.items()}
    parsers |= {target: parser_of(target) for target, _ in checked if target != "nnunetv2_druwas.cli"}
    for program, parser in parsers.items():
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(
                    action, argparse._HelpAction):
                continue
            if not any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text) for o in action.option_strings):
                missing.append(f"{program}: {'/'.join(action.option_strings)} is named nowhere in the docs")
    assert not missing, "\n".join(missing)


def test_every_relative_link_resolves():
    problems = [p for path in DOCS for p in link_problems(path)]
    assert not problems, "links that lead nowhere:\n" + "\n".join(problems)


def test_pending_files_are_still_pending_and_referenced():
    text = "\n".join(p.read_text() for p in DOCS)
    for relative, who in PENDING.items():
        assert not (ROOT / relative).exists(), f"{relative} exists now: remove it from PENDING in {__file__}"
        assert relative.rsplit("/", 1)[-1] in text, f"{relative} ({who}) is referenced nowhere: drop it"


def test_readme_test_command_is_the_ci_command():
    """`.ci/run` runs the README's test command; both must stay the same."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    (marker,) = [i for i, line in enumerate(ci) if line.strip() == "# The README's test command:"]
    command = ci[marker + 1].strip()
    blocks = split_fences((ROOT / "README.md").read_text())[0]
    assert any(command in line for _, _, lines in blocks for line in lines), command
    assert any("nnunetv2_druwas demo" in line for _, _, lines in blocks for line in lines)


# ---------------------------------------------------------------- the checkers themselves

BAD_COMMANDS = {   # made-up lines, each with one mistake the check must report (and the part it names)
    "nnunetv2_druwas evaluate pred gt -o m.csv --protokol brats": "--protokol",
    "nnunetv2_druwas evalute pred gt -o m.csv": "'evalute'",
    "python -m analysis.tables --results r --no-such-option": "--no-such-option",
    "DRUWAS_EPOCHS=1 nnunetv2_druwas demo --epoch 3": "--epoch",          # an abbreviation argparse accepts
    "nnunetv2_druwas synth OUT [--shapes X Y Z] [--year Y | --msd]": "--shapes",
    "nnunetv2_druwas evaluate-results --protocol nope": "invalid choice",   # parsed whole: a wrong value
    "nnunetv2_druwas convert-brats src": "required",                        # parsed whole: --year missing
    "python -m nnunetv2_druwas.no_such_module --x": "no_such_module",
    'eval "$(nnunetv2_druwas env --trainer-dir)"': "--trainer-dir",
    "for s in a b; do nnunetv2_druwas convert-brats $s --yaer 2020; done": "--yaer",
    "python -m nnunetv2_druwas.folds FOLD_DIR --status -- nnUNetv2_train 500 3d_fullres 0": "--status",
    "python tests/no_such_script.py --x": "does not exist",
    "bash nnunetv2_druwas/benchmarks/no_such.sh": "does not exist",
    "nnunetv2_druwas grid -d 500 \\\n    --trainers all --no-such-flag": "--no-such-flag",
}
GOOD_COMMANDS = [
    "nnunetv2_druwas evaluate pred gt -o m.csv --protocol brats",
    "DRUWAS_EPOCHS=1 DRUWAS_ITERS=2 nnunetv2_druwas demo --epochs 3 --workdir d",
    "nnunetv2_druwas synth OUT [--shape X Y Z] [--year Y | --msd]   # a comment --not-an-option",
    'eval "$(nnunetv2_druwas env --trainers-dir)" && nnunetv2_druwas trainers --names-only | grep -v Swish',
    "for s in a b; do nnunetv2_druwas convert-brats $s --year 2020 -d 500; done",
    "python -m nnunetv2_druwas.folds FOLD_DIR -- nnUNetv2_train 500 3d_fullres 0 -tr X --c",
    "python -m analysis.tables --results $nnUNet_results --out tables --compare-protocols brats eq2",
    "nnunetv2_druwas grid -d 500 \\\n    --trainers all --sbatch-extra \"#SBATCH --qos=normal\"",
    "python -m pip install -e . && python -m pytest tests -q --no-such-pytest-option",   # not ours
    "nnUNetv2_train 500 3d_fullres 0 -tr nnUNetTrainerDRUwAS --whatever",               # not ours
]


def test_the_command_check_catches_every_made_up_mistake():
    for line, named in BAD_COMMANDS.items():
        problems, _ = command_problems(f"```bash\n{line}\n```\n", "made-up.md")
        assert len(problems) == 1 and named in problems[0] and problems[0].startswith("made-up.md:2:"), (
            line, problems)
    problems, checked = command_problems("```bash\n" + "\n".join(GOOD_COMMANDS) + "\n```\n", "made-up.md")
    assert not problems, problems
    assert len(checked) == 9, checked   # every command of ours, none of pip/pytest/nnUNetv2_train/grep
    # printed output is not read; an indented fence and a `sh` block are
    assert command_problems("```text\nnnunetv2_druwas demo --nope\n```\n", "x")[0] == []
    assert len(command_problems("  ```sh\n  nnunetv2_druwas demo --nope\n  ```\n", "x")[0]) == 1


def test_commands_are_split_as_a_shell_splits_them():
    assert commands_in('eval "$(nnunetv2_druwas env)"  # exports nnUNet_extTrainer') == [
        ["nnunetv2_druwas", "env"], ["eval", "$(nnunetv2_druwas env)"]]
    assert commands_in("for tr in $(nnunetv2_druwas trainers --names-only | grep -v -e Swish); do") == [
        ["for", "tr", "in"], ["nnunetv2_druwas", "trainers", "--names-only"], ["grep", "-v", "-e", "Swish"]]
    assert commands_in("A=1 B=2 nnunetv2_druwas demo; do x a#b") == [["nnunetv2_druwas", "demo"], ["x", "a#b"]]
    assert commands_in("nnunetv2_druwas synth OUT [--year Y | --msd] | head") == [
        ["nnunetv2_druwas", "synth", "OUT", "[--year", "Y", "|", "--msd]"], ["head"]]
    assert logical_lines(["a \\", "  b", "c"], 5) == [(5, "a    b"), (7, "c")]


def test_the_link_check_catches_dead_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n## Tables, statistics and plots: `python -m analysis.tables`\n## Repeats\n## Repeats\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Top: *the* project\n"
        "[ok](docs/page.md) [ok](docs/page.md#tables-statistics-and-plots-python--m-analysistables)\n"
        "[ok](docs/page.md#repeats-1) [ok](#top-the-project) [ok](docs/) [ok](https://example.org/x)\n"
        "`[code](nowhere.md)` ![img](docs/missing.png)\n"
        "[bad](docs/nowhere.md) [bad](docs/page.md#repeats-2) [bad](#no-such-heading)\n"
        "```\n[code](nowhere.md)\n```\n")
    problems = link_problems(readme, root=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/missing.png: docs/missing.png does not exist",
        "docs/nowhere.md: docs/nowhere.md does not exist",
        "docs/page.md#repeats-2: docs/page.md has no heading #repeats-2",
        "#no-such-heading: README.md has no heading #no-such-heading"], problems


@pytest.mark.parametrize("heading, expected", [   # anchors as GitHub writes them
    ("The whole grid on a cluster: `nnunetv2_druwas grid`", "the-whole-grid-on-a-cluster-nnunetv2_druwas-grid"),
    ("Complexity: `python -m nnunetv2_druwas.benchmarks.complexity [--out DIR]`",
     "complexity-python--m-nnunetv2_druwasbenchmarkscomplexity---out-dir"),
    ("Decisions on what the paper leaves open", "decisions-on-what-the-paper-leaves-open"),
    ("Install (pip, wheel)", "install-pip-wheel"),
])
def test_slugs_are_github_anchors(heading, expected):
    assert slug(heading) == expected


def test_every_runnable_module_has_build_parser():
    """One mechanism: each module a user runs with ``python -m`` (or a script of tests/) builds its parser in
    ``build_parser()``, so the docs check can read it."""
    runnable = [p for p in [*ROOT.glob("nnunetv2_druwas/**/*.py"), *ROOT.glob("analysis/**/*.py"),
                            *ROOT.glob("tests/**/*.py")]
                if not p.name.startswith("test_")
                and re.search(r"^if __name__ == .__main__.:", p.read_text(), re.MULTILINE)]
    assert runnable, "no runnable module found"
    lacking = []
    for path in runnable:
        relative = path.relative_to(ROOT)
        target = str(relative) if relative.parts[0] == "tests" else ".".join(relative.with_suffix("").parts)
        try:
            assert isinstance(parser_of(target), argparse.ArgumentParser)
        except LookupError as e:
            lacking.append(str(e))
    assert not lacking, "\n".join(lacking)
