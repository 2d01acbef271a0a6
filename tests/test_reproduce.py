"""Every published number can be made again: docs/results/manifest.json names each file in
docs/results/ and the command that writes it, every file carries its provenance, and every
entry still runs (``python -m benchmarks.reproduce --all --quick``), so a renamed option or a
changed default breaks the build instead of the docs."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import provenance, reproduce  # noqa: E402


def test_manifest_names_every_published_file_and_each_has_provenance():
    entries = reproduce.load_manifest()
    assert reproduce.validate(entries) == []
    for e in entries:
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", e["name"]), e["name"]
        assert any("{out}" in a for argv in e["commands"] for a in argv), e["name"]
        for name in e["outputs"].values():
            record = provenance.read(os.path.join(reproduce.RESULTS, name))
            assert record["entry"] == e["name"]
            assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", record["commit"]), (name, record)
            assert record["date"] and record["command"]


def test_every_cited_results_file_is_published():
    pages = ["README.md", os.path.join("docs", "results.md")]
    pages += [os.path.join("cil_genreg", "models", "weights", f)
              for f in os.listdir(os.path.join(ROOT, "cil_genreg", "models", "weights"))
              if f.endswith(".md")]
    cited = set()
    for page in pages:
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            cited |= set(re.findall(r"results/([\w.-]+\.(?:csv|json|png))", f.read()))
    published = {n for e in reproduce.load_manifest() for n in e["outputs"].values()}
    assert cited - {"manifest.json"} <= published, cited - published


def test_provenance_round_trip(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    record = {"entry": "x", "commit": "0" * 40, "date": "2026-01-01T00:00:00+00:00",
              "command": "python demos/x.py --lambdas '{\"tv\": [1]}' --out '{out}'"}
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    (tmp_path / "t.json").write_text(json.dumps({"rows": [1]}))
    fig = plt.figure(figsize=(1, 1))
    fig.savefig(tmp_path / "t.png")
    plt.close(fig)
    from PIL import Image
    pixels = Image.open(tmp_path / "t.png").tobytes()
    for name in ("t.csv", "t.json", "t.png"):
        path = str(tmp_path / name)
        assert provenance.read(path) is None
        provenance.stamp(path, dict(record, entry="old"))
        provenance.stamp(path, record)      # replaces, never stacks
        assert provenance.read(path) == record
    assert provenance.read_csv_rows(str(tmp_path / "t.csv")) == [{"a": "1", "b": "2"}]
    assert json.loads((tmp_path / "t.json").read_text())["rows"] == [1]
    image = Image.open(tmp_path / "t.png")
    assert image.tobytes() == pixels and json.loads(image.text["provenance"]) == record
    (tmp_path / "l.json").write_text("[1]")
    with pytest.raises(ValueError, match="list"):
        provenance.stamp(str(tmp_path / "l.json"), record)


def test_quick_options_replace_or_append():
    argv = ["python", "d.py", "--n", "10", "--angles", "10", "30", "--out", "{out}"]
    assert reproduce.merge_options(argv, ["--n", "1", "--quick"]) == \
        ["python", "d.py", "--n", "1", "--angles", "10", "30", "--out", "{out}", "--quick"]


def test_unknown_entry_is_a_clear_error():
    result = subprocess.run([sys.executable, "-m", "benchmarks.reproduce", "no-such-entry"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown entry 'no-such-entry'" in result.stderr
    assert "mnist-parallel-start-tv" in result.stderr   # the known ones are listed


def test_all_entries_run_quick():
    """Every entry, tiny configuration, in a temporary folder; docs/ untouched. Under 5 min."""
    before = {n: os.path.getmtime(os.path.join(reproduce.RESULTS, n))
              for n in os.listdir(reproduce.RESULTS)}
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "benchmarks.reproduce", "--all", "--quick"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert f"{len(reproduce.load_manifest())}/" in result.stdout
    assert "FAILED" not in result.stdout
    after = {n: os.path.getmtime(os.path.join(reproduce.RESULTS, n))
             for n in os.listdir(reproduce.RESULTS)}
    assert after == before
    assert seconds < 300, f"--all --quick took {seconds:.0f} s"
