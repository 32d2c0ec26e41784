"""Table 5: the complexity.csv of ``python -m nnunetv2_druwas.benchmarks.complexity`` in the tables.

The file is written by the benchmark itself (``--no-timing``: counts on the meta device); the timed file
committed under docs/benchmarks gives the timing columns. Expected cells are formatted here from the CSV.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.tables import compile_tables, main
from nnunetv2_druwas.variants import ABLATION_VARIANTS
from test_analysis import _markdown_rows, _pdflatex

REPO = Path(__file__).resolve().parents[1]
TIMED = REPO / "docs" / "benchmarks" / "complexity_cpu" / "complexity.csv"
NNUNET_LABELS = {"nnunet_default": "nnU-Net (default)", "nnunet_resenc_m": "nnU-Net ResEnc M"}


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """complexity.csv of the benchmark without timing."""
    out = tmp_path_factory.mktemp("complexity")
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_druwas.benchmarks.complexity", "--no-timing", "--out",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "complexity.csv"


@pytest.fixture
def no_results(monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)


def _cells(frame: pd.DataFrame, timed: list[tuple[str, int]]) -> dict[str, list[str]]:
    """model -> the cells Table 5 shows, formatted here: counts with separators, GFLOPs and MiB 1 decimal."""
    shown = [("parameters", 0), ("gflops_forward_128", 1), ("saved_for_backward_mib_128_b2", 1),
             ("saved_for_backward_mib_128_b2_checkpointing", 1), *timed]
    return {row["model"]: ["-" if pd.isna(row[c]) else f"{row[c]:,.{d}f}" for c, d in shown]
            for _, row in frame.iterrows()}


def test_table5_from_the_benchmark(counted, tmp_path, no_results):
    out = tmp_path / "tables"
    compile_tables(None, out, complexity=counted, plots=False, n_resamples=99, echo=False)
    source = pd.read_csv(counted)
    table = pd.read_csv(out / "table5.csv")
    assert table["model"].tolist() == source["model"].tolist() == [v.key for v in ABLATION_VARIANTS] + list(NNUNET_LABELS)
    labels = {**{v.key: v.label for v in ABLATION_VARIANTS}, **NNUNET_LABELS}
    assert table["label"].tolist() == [labels[m] for m in table["model"]]
    pd.testing.assert_frame_equal(table.drop(columns="label"), source, check_dtype=False)
    rows = {cells[1]: cells for cells in _markdown_rows((out / "table5.md").read_text())}
    expected = _cells(source, [])
    assert set(rows) == set(expected)
    for model, cells in rows.items():
        assert cells[0] == labels[model] and cells[3:] == expected[model], model
    assert rows["nnunet_default"][6] == "-" and rows["full"][2] == "DRUwASUNet"
    md = (out / "table5.md").read_text()
    assert md.startswith("**Table 5.** Model complexity")
    assert f"- {source['protocol'].iloc[0]}" in md and "Timing not run (--no-timing)." in md
    assert f"Source: {counted} (python -m nnunetv2_druwas.benchmarks.complexity)." in md
    assert "step / nnU-Net" not in md                                         # no timing columns without timing
    assert 'id="table5"' in (out / "report.html").read_text()
    assert r"\input{table5}" in (out / "tables.tex").read_text()
    shutil.copy(out / "table5.tex", tmp_path / "table5.tex")
    from analysis.render import latex_document
    (tmp_path / "alone.tex").write_text(latex_document([r"\input{table5}"]))
    log = _pdflatex(tmp_path, "alone.tex")
    assert "Overfull \\hbox" not in log and "Float too large" not in log
    assert "Output written on alone.pdf (1 page" in log


def test_timing_columns_and_where_the_file_is_found(tmp_path, no_results):
    results, out = tmp_path / "results", tmp_path / "tables"
    results.mkdir()
    shutil.copy(TIMED, results / "complexity.csv")
    assert main(["--results", str(results), "--out", str(out), "--no-plots", "--n-resamples", "99",
                 "--compare-protocols"]) == 0
    source = pd.read_csv(TIMED)
    md = (out / "table5.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert header.endswith("| CPU step / nnU-Net (64^3, b2), plain | CPU step / nnU-Net (64^3, b2), checkpointing "
                           "| CPU inference (s/case), plain |")
    timed = [("cpu_step_ratio_64_b2", 3), ("cpu_step_ratio_64_b2_checkpointing", 3), ("cpu_inference_s_case", 1)]
    expected = _cells(source, timed)
    for cells in _markdown_rows(md):
        assert cells[3:] == expected[cells[1]], cells[1]
    reference = source.set_index("model").at["nnunet_default", "cpu_step_s_64_b2"]
    assert f"CPU step / nnU-Net: the step time as a ratio to nnU-Net's default network's, {reference:.2f} s per " \
           f"step at 64^3, batch 2." in md
    # found in <out> too; gone (with its files) when there is none
    (results / "complexity.csv").rename(out / "complexity.csv")
    assert main(["--results", str(results), "--out", str(out), "--no-plots", "--compare-protocols"]) == 0
    assert f"Source: {out / 'complexity.csv'}" in (out / "table5.md").read_text()
    (out / "complexity.csv").unlink()
    assert main(["--results", str(results), "--out", str(out), "--no-plots", "--compare-protocols"]) == 0
    assert not list(out.glob("table5.*")) and r"\input{table5}" not in (out / "tables.tex").read_text()


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="gflops_forward_128"), "missing column(s) gflops_forward_128"),
    (lambda f: f.assign(gflops_forward_128=f["gflops_forward_128"].astype(object).where(f["model"] != "sa", "many")),
     "gflops_forward_128 of model sa is 'many', not a number"),
    (lambda f: f.assign(parameters=f["parameters"] + 0.5), "parameters of model baseline is"),
    (lambda f: f.assign(model=f["model"].replace("swish", "mystery")), "unknown model(s) mystery"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "model(s) baseline listed more than once"),
    (lambda f: f.iloc[:0], "no rows"),
])
def test_a_malformed_complexity_csv_is_an_error_naming_the_file(tmp_path, capsys, no_results, change, message):
    bad = tmp_path / "complexity.csv"
    change(pd.read_csv(TIMED)).to_csv(bad, index=False)
    out = tmp_path / "tables"
    assert main(["--out", str(out), "--complexity", str(bad), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: ") and message in err, err
    assert not out.exists()                                                    # nothing written


def test_an_empty_or_absent_complexity_file_is_an_error(tmp_path, capsys, no_results):
    out, empty, absent = tmp_path / "tables", tmp_path / "empty.csv", tmp_path / "absent.csv"
    empty.write_bytes(b"")
    assert main(["--out", str(out), "--complexity", str(empty)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {empty}: not a readable complexity table")
    assert main(["--out", str(out), "--complexity", str(absent)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --complexity {absent}: no such file")
    assert not out.exists()
