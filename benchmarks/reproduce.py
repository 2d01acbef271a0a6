"""Reproduce the published results: every table and figure in docs/results/ from one command.

    python -m benchmarks.reproduce --list                 # the entries, with their last full run
    python -m benchmarks.reproduce ENTRY [ENTRY ...]      # full run: regenerate, compare, publish
    python -m benchmarks.reproduce --all --quick          # every entry, tiny, side by side (CI)
    python -m benchmarks.reproduce --check                # the manifest against docs/results/

Run from the repository root. The manifest, ``docs/results/manifest.json``, is a JSON list; one
experiment is one object in it, so adding an experiment is appending one object::

    {
     "name": "ct128-samepatient-parallel-60",        # what the experiment is (lowercase, -)
     "doc": ["docs/results.md#128-60-angles-2-noise-3-slices"],   # where its numbers are cited
     "commands": [                                   # argv lists, run in order, from the root;
      ["python", "demos/ct_tomography.py", "--n", "3", "--angles", "60",
       "--out", "{out}", "--quiet", "--overwrite"]   # "python" = this interpreter; {out} = a
     ],                                              # scratch folder shared by the commands
     "quick": [["--n", "1", "--iterations", "2", "--quick"]],
     "outputs": {"ct128_parallel_60.csv": "ct128_samepatient_parallel_60.csv"},
     "provenance": {"commit": ..., "date": ..., "machine": ..., "seconds": ..., "note": ...}
    }

* ``commands``: a sequence is allowed (train a model into ``{out}``, then run a demo with
  ``--model {out}/model.safetensors``). The shipped models are referred to by name.
* ``quick``: one list of options per command (or null: run it as it is). Each option
  (``--name`` and the values up to the next ``--name``) replaces the same option of the
  command, or is appended; it must make the command take seconds (few images, 1–2
  iterations, one λ, one training epoch on a few images) while still writing every output.
* ``outputs``: file written in ``{out}`` → its published name in docs/results/. Names say
  what the experiment is: ``DATA_GEOMETRY_ANGLES[_VARIANT].ext`` (``MODEL_evaluation.ext``
  for the model reports).
* ``provenance``: of the last full run; written by this runner (leave it out of a new entry).
  ``"seconds": null`` with a note marks a record stamped from git history, not re-run since.

A full run writes into a scratch folder, checks every output, prints for every published CSV
the published value, the new one and the difference per row and numeric column, then copies
the outputs into docs/results/ with their provenance stamped (``benchmarks/provenance.py``:
a ``# provenance:`` first line in a CSV, a ``"provenance"`` key in a JSON, a ``tEXt`` chunk
in a PNG) and updates the entry's provenance. ``--no-publish`` only compares. ``--quick``
runs into a temporary folder, checks that every output was written (non-empty, parseable),
touches nothing in docs/, prints the seconds per entry and exits non-zero on any failure.
"""
import argparse
import csv
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from benchmarks import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
MANIFEST = os.path.join(RESULTS, "manifest.json")
REQUIRED = ("name", "doc", "commands", "outputs")


# ---------------------------------------------------------------------------- manifest
def load_manifest(path=MANIFEST):
    with open(path) as f:
        return json.load(f)


def _compact(value, indent=0):
    """JSON with one entry field per line and every list of scalars on one line."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {_compact(v, indent + 1)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [pad + " " + _compact(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)


def save_manifest(entries, path=MANIFEST):
    with open(path, "w") as f:
        f.write(_compact(entries) + "\n")


def validate(entries, results=RESULTS):
    """The problems of the manifest against the folder of published files (empty: valid)."""
    problems, published, names = [], {}, set()
    for i, e in enumerate(entries):
        missing = [k for k in REQUIRED if k not in e]
        if missing:
            problems.append(f"entry {i}: missing {missing}")
            continue
        if e["name"] in names:
            problems.append(f"{e['name']}: duplicate name")
        names.add(e["name"])
        quick = e.get("quick")
        if quick is not None and len(quick) != len(e["commands"]):
            problems.append(f"{e['name']}: quick has {len(quick)} lists for "
                            f"{len(e['commands'])} commands")
        for new, name in e["outputs"].items():
            if name in published:
                problems.append(f"{name}: output of both {published[name]} and {e['name']}")
            published[name] = e["name"]
            path = os.path.join(results, name)
            if not os.path.isfile(path):
                problems.append(f"{e['name']}: published file {name} does not exist")
            elif provenance.read(path) is None:
                problems.append(f"{name}: no provenance")
    for name in sorted(os.listdir(results)):
        if name != os.path.basename(MANIFEST) and name not in published:
            problems.append(f"{name}: in docs/results but no entry's output")
    return problems


# ---------------------------------------------------------------------------- commands
def _groups(argv):
    """(positional prefix, [(option, [values])]) of an argv list."""
    prefix, groups = [], []
    for token in argv:
        if token.startswith("--"):
            groups.append((token, []))
        elif groups:
            groups[-1][1].append(token)
        else:
            prefix.append(token)
    return prefix, groups


def merge_options(argv, extra):
    """``argv`` with each option of ``extra`` replacing the same option, or appended."""
    prefix, groups = _groups(argv)
    extra_prefix, extra_groups = _groups(extra or [])
    if extra_prefix:
        raise ValueError(f"quick options must start with --: {extra}")
    for option, values in extra_groups:
        for i, (name, _) in enumerate(groups):
            if name == option:
                groups[i] = (option, values)
                break
        else:
            groups.append((option, values))
    return prefix + [t for option, values in groups for t in [option] + values]


def command_lines(entry, out, quick=False):
    """The argv lists of an entry, ``{out}`` filled in, ``python`` = this interpreter."""
    quick_lists = entry.get("quick") or [None] * len(entry["commands"])
    lines = []
    for argv, extra in zip(entry["commands"], quick_lists):
        if quick:
            argv = merge_options(argv, extra)
        argv = [a.replace("{out}", out) for a in argv]
        if argv[0] == "python":
            argv = [sys.executable] + argv[1:]
        lines.append(argv)
    return lines


def display_command(entry):
    """The entry's commands as one shell line (what a provenance record names)."""
    return " && ".join(shlex.join(argv) for argv in entry["commands"])


# ---------------------------------------------------------------------------- checks
def check_output(path):
    """None when ``path`` is a non-empty, parseable output, else what is wrong."""
    if not os.path.isfile(path):
        return "not written"
    if os.path.getsize(path) == 0:
        return "empty"
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".csv":
            if not provenance.read_csv_rows(path):
                return "a CSV without rows"
        elif ext == ".json":
            with open(path) as f:
                json.load(f)
        elif ext == ".png":
            with open(path, "rb") as f:
                if f.read(8) != b"\x89PNG\r\n\x1a\n":
                    return "not a PNG"
    except (ValueError, csv.Error) as err:
        return f"unreadable: {err}"
    return None


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def compare_csv(published, new, echo=print):
    """Print, per row and numeric column, the published value, the new one and the
    difference; return {column: max |difference|}."""
    old_rows, new_rows = provenance.read_csv_rows(published), provenance.read_csv_rows(new)
    if len(old_rows) != len(new_rows) or (old_rows and list(old_rows[0]) != list(new_rows[0])):
        echo(f"  rows/columns differ: published {len(old_rows)} rows, new {len(new_rows)}")
        return None
    worst = {}
    for old, row in zip(old_rows, new_rows):
        label = ", ".join(f"{k}={v}" for k, v in old.items() if _float(v) is None or
                          k in ("image", "angles", "volume", "weight")) or "row"
        for column, value in old.items():
            a, b = _float(value), _float(row[column])
            if a is None or b is None or column in ("image", "angles", "volume"):
                if (value or "") != (row[column] or ""):
                    echo(f"  {label}: {column} {value!r} -> {row[column]!r}")
                continue
            worst[column] = max(worst.get(column, 0.0), abs(b - a))
            if b != a:
                echo(f"  {label}: {column} published {a:.4g}, new {b:.4g}, "
                     f"difference {b - a:+.4g}")
    echo("  max |difference|: " + (", ".join(f"{k} {v:.4g}" for k, v in worst.items())
                                   or "none"))
    return worst


# ---------------------------------------------------------------------------- provenance
def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def current_commit():
    """HEAD, with ``-dirty`` when tracked files outside docs/results/ have changes (new,
    untracked files do not count: the code that ran is HEAD's)."""
    commit = _git("rev-parse", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                   ":(exclude)docs/results")
    return f"{commit}-dirty" if commit and changes else commit


def machine():
    """CPU model, cores, Python, torch and CIL versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for module, attr in (("torch", "__version__"), ("cil", "version.version")):
        try:
            obj = __import__(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            versions[module] = str(obj)
        except Exception:  # noqa: BLE001  (a version is information, never a failure)
            versions[module] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": versions["torch"], "cil": versions["cil"]}


def now():
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------------------- runs
def run_entry(entry, out, quick, echo=print, one_thread=False):
    """Run an entry's commands into ``out``; return (seconds, problems). ``one_thread``: each
    command on one thread (``OMP_NUM_THREADS=1``), for entries run side by side."""
    os.makedirs(out, exist_ok=True)
    # the checkout's package, not whichever copy is installed (demos/ run as scripts)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    for argv in command_lines(entry, out, quick):
        result = subprocess.run(argv, cwd=ROOT, text=True, env=env,
                                stdout=subprocess.PIPE if quick else None,
                                stderr=subprocess.STDOUT if quick else None)
        if result.returncode != 0:
            if quick:
                echo(result.stdout[-4000:])
            return time.perf_counter() - t0, [f"`{shlex.join(argv)}` exited with "
                                              f"{result.returncode}"]
    seconds = time.perf_counter() - t0
    problems = [f"{name}: {why}" for name in entry["outputs"]
                if (why := check_output(os.path.join(out, name)))]
    return seconds, problems


def publish(entry, out, seconds, commit, echo=print):
    """Copy the outputs into docs/results/ with provenance; return the entry's record."""
    record = {"commit": commit, "date": now(), "machine": machine(),
              "seconds": round(seconds, 1)}
    for new, name in entry["outputs"].items():
        target = os.path.join(RESULTS, name)
        shutil.copyfile(os.path.join(out, new), target)
        provenance.stamp(target, {"entry": entry["name"], "commit": commit,
                                  "date": record["date"], "command": display_command(entry)})
        echo(f"  published docs/results/{name}")
    return record


def full(entries, names, publish_results=True, scratch=None, echo=print):
    failures = 0
    for i, entry in enumerate(e for e in entries if e["name"] in names):
        echo(f"[{i + 1}/{len(names)}] {entry['name']}: {display_command(entry)}")
        out = tempfile.mkdtemp(prefix=f"reproduce-{entry['name']}-", dir=scratch)
        commit = current_commit()
        seconds, problems = run_entry(entry, out, quick=False, echo=echo)
        if problems:
            failures += 1
            echo(f"  FAILED after {seconds:.0f} s: " + "; ".join(problems))
            continue
        echo(f"  ran in {seconds:.0f} s (outputs in {out})")
        for new, name in entry["outputs"].items():
            published = os.path.join(RESULTS, name)
            if name.endswith(".csv") and os.path.isfile(published):
                echo(f" {name} (published -> new):")
                compare_csv(published, os.path.join(out, new), echo)
        if publish_results:
            entry["provenance"] = publish(entry, out, seconds, commit, echo)
            save_manifest(entries)
    return failures


def quick_all(entries, names, echo=print, jobs=None):
    """Every named entry on its tiny configuration, ``jobs`` at a time (default: one per CPU
    core, each subprocess on one thread); returns the number of failures."""
    from concurrent.futures import ThreadPoolExecutor
    chosen = [e for e in entries if e["name"] in names]
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    failures, total = 0, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reproduce-quick-") as tmp, \
            ThreadPoolExecutor(jobs) as pool:
        runs = [pool.submit(run_entry, entry, os.path.join(tmp, entry["name"]), True, echo,
                            jobs > 1) for entry in chosen]
        for i, (entry, run) in enumerate(zip(chosen, runs)):
            seconds, problems = run.result()
            failures += bool(problems)
            echo(f"[{i + 1}/{len(chosen)}] {entry['name']} ... "
                 f"{'FAILED' if problems else 'ok'} ({seconds:.1f} s)"
                 + "".join(f"\n    {p}" for p in problems))
    echo(f"{len(chosen) - failures}/{len(chosen)} entries ok in "
         f"{time.perf_counter() - total:.0f} s (quick, {jobs} at a time)")
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.reproduce",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="manifest entries to run")
    p.add_argument("--all", action="store_true", help="every entry")
    p.add_argument("--quick", action="store_true",
                   help="tiny configuration into a temporary folder; docs/ untouched")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--check", action="store_true",
                   help="check the manifest against docs/results/ and exit")
    p.add_argument("--no-publish", action="store_true",
                   help="full run: compare with the published files, do not replace them")
    p.add_argument("--scratch", default=None, help="folder for the full runs' outputs")
    p.add_argument("--jobs", type=int, default=None,
                   help="--quick: entries run side by side (default: one per CPU core)")
    p.add_argument("--manifest", default=MANIFEST, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    entries = load_manifest(args.manifest)
    known = [e["name"] for e in entries]
    if args.list:
        for e in entries:
            prov = e.get("provenance") or {}
            secs = prov.get("seconds")
            print(f"{e['name']:40} {len(e['outputs']):2} files, last full run "
                  f"{prov.get('date', '?')} ({'not re-run since' if secs is None else f'{secs:.0f} s'})")
        return 0
    if args.check:
        problems = validate(entries)
        print("\n".join(problems) or f"manifest ok: {len(entries)} entries")
        return 1 if problems else 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        p.error(f"unknown entry {', '.join(map(repr, unknown))}; known entries: "
                f"{', '.join(known)} (--list describes them)")
    if not args.names and not args.all:
        p.error("name an entry (or several), or --all; --list shows them")
    names = known if args.all else args.names
    if args.quick:
        return 1 if quick_all(entries, names, jobs=args.jobs) else 0
    return 1 if full(entries, names, not args.no_publish, args.scratch) else 0


if __name__ == "__main__":
    sys.exit(main())
