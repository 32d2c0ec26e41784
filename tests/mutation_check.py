"""Plant four plausible one-line bugs, one at a time, in scratch copies of the repository and check
that the tests catch each of them.

    python tests/mutation_check.py [--only NAME ...] [--suite] [--no-baseline] [--keep]

Each mutation is applied to a copy of the working tree (tracked and untracked, not ignored files)
in a temporary folder; the tests that guard it then run there with ``PYTHONPATH`` pointing at the
copy (so ``nnUNetv2_train`` and the trainers import the mutated code too). A mutation is *caught*
when pytest reports failing tests (exit status 1); an import or collection error does not count.
First the same tests run on an unmutated copy (the control: they must pass there). ``--suite``
runs the whole ``tests/`` folder for every mutation instead of the selected tests (much slower).
The tests train tiny nnU-Net models on the CPU: the selected tests take a few minutes per mutation.

Not collected by pytest (the file name does not start with ``test_``) and not part of CI. Exit
status 0 when the control passes and every mutation is caught, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: where the mutation sites are looked for (exactly one match across these files is required)
SOURCES = ("nnunetv2_druwas/**/*.py", "trainers/*.py", "analysis/*.py")


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str                            # what the planted bug is, in words
    sites: tuple[tuple[str, str], ...]  # (regular expression, re.sub replacement) alternatives: the one
                                        # site where any of them matches (re.DOTALL | re.MULTILINE)
    tests: tuple[str, ...]              # pytest node ids that must catch it


MUTATIONS = (
    Mutation("label-table", "the BraTS -> nnU-Net label table without the 1/2 swap: {1: 1, 2: 2, 4: 3}",
             ((r"^(BRATS_TO_NNUNET\b[^=\n]*= )\{0: 0, 1: 2, 2: 1, 4: 3\}", r"\1{0: 0, 1: 1, 2: 2, 4: 3}"),
              # the table as rows (BraTS label, nnU-Net label, name, regions), the dict derived from it
              (r"^(\s*)\(1, 2,([^\n]*\n\s*)\(2, 1,", r"\1(1, 1,\2(2, 2,")),
             ("tests/test_data.py::test_converted_labels_mean_what_the_brats_labels_mean",
              "tests/test_data.py::test_convert_each_layout")),
    Mutation("plateau-min", "the paper recipe's ReduceLROnPlateau with mode=\"min\"",
             ((r'mode="max"', 'mode="min"'),),
             ("tests/test_trainers.py::test_plateau_keeps_the_rate_while_the_signal_rises",
              "tests/test_trainers.py::test_plateau_lowers_the_rate_once_patience_plus_one_epochs_after_the_best")),
    Mutation("continuation-not-strict", "the Swish continuation loading its weights with strict=False",
             ((r"(load_state_dict\([^)]*strict=)True", r"\1False"),),
             ("tests/test_trainers.py::test_continuation_from_a_checkpoint_without_its_head_is_refused",)),
    Mutation("batch-size-4", "paper_batch_size always returning 4",
             ((r"(    def paper_batch_size\(self\)[^\n]*:\n        \"\"\".*?\"\"\"\n)", r"\1        return 4\n"),),
             ("tests/test_trainers.py::test_paper_batch_size_follows_the_memory_budget",)),
)


def copy_working_tree(target: Path) -> None:
    """The files git would see (tracked, and untracked but not ignored) copied into ``target``."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def plant(mutation: Mutation, copy: Path) -> Path:
    """Apply ``mutation`` in ``copy``; returns the changed file. Exactly one site must match."""
    flags = re.DOTALL | re.MULTILINE
    sites = []
    for glob in SOURCES:
        for path in sorted(copy.glob(glob)):
            text = path.read_text()
            for pattern, replacement in mutation.sites:
                sites += [(path, text, pattern, replacement)] * len(re.findall(pattern, text, flags))
    if len(sites) != 1:
        raise SystemExit(f"{mutation.name}: {len(sites)} sites match {[p for p, _ in mutation.sites]} in "
                         f"{', '.join(SOURCES)} (expected exactly 1); update MUTATIONS in {Path(__file__).name}")
    path, text, pattern, replacement = sites[0]
    mutated = re.sub(pattern, replacement, text, count=1, flags=flags)
    assert mutated != text
    path.write_text(mutated)
    return path


def run_tests(copy: Path, tests: list[str]) -> tuple[int, list[str], str]:
    """pytest in ``copy`` with the copy first on PYTHONPATH; returns exit status, failed tests, output tail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("nnUNet_", "DRUWAS_"))}
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", *tests, "-q", "-rf", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    failed = sorted(set(re.findall(r"^FAILED (\S+)", output, re.MULTILINE)))
    return proc.returncode, failed, output[-3000:]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python tests/mutation_check.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=[m.name for m in MUTATIONS], help="these mutations only")
    parser.add_argument("--suite", action="store_true", help="run the whole tests/ folder for each mutation")
    parser.add_argument("--no-baseline", action="store_true", help="skip the control run on the unmutated copy")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (their paths are printed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or m.name in args.only]

    def tests_of(selected: list[Mutation]) -> list[str]:
        return ["tests"] if args.suite else sorted({t for m in selected for t in m.tests})

    scratch = Path(tempfile.mkdtemp(prefix="druwas_mutation_"))
    ok = True
    try:
        if not args.no_baseline:
            copy = scratch / "control"
            copy_working_tree(copy)
            code, failed, tail = run_tests(copy, tests_of(mutations))
            print(f"control (no mutation): pytest exit {code}" + (f", failed: {', '.join(failed)}" if failed else ""),
                  flush=True)
            if code != 0:
                print(tail)
                print("the control run must pass before a failing mutant means anything")
                return 1
        for mutation in mutations:
            copy = scratch / mutation.name
            copy_working_tree(copy)
            changed = plant(mutation, copy)
            code, failed, tail = run_tests(copy, tests_of([mutation]))
            caught = code == 1 and bool(failed)
            ok &= caught
            where = changed.relative_to(copy)
            verdict = f"CAUGHT by {', '.join(failed)}" if caught else f"NOT CAUGHT (pytest exit {code})"
            print(f"{mutation.name}: {mutation.bug} [{where}]: {verdict}", flush=True)
            if not caught:
                print(tail)
    finally:
        if args.keep:
            print(f"scratch copies kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print("every mutation was caught" if ok else "some mutations were NOT caught")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
