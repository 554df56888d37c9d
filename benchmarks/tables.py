"""The README's tables, regenerated from the committed full-run JSON of the benchmarks.

    python -m benchmarks.tables            # rewrite every generated table in README.md
    python -m benchmarks.tables --check    # exit 1 and print a diff when README.md differs

Each generated table sits in the README between two HTML comments that name it::

    <!-- table:continual -->
    | ... the table ... |
    <!-- /table -->

and everything between them is replaced. :data:`TABLES` lists the tables: adding one is one
entry (its README marker, the JSON files under ``benchmarks/results/`` it reads, its column
headers, and a function turning the loaded JSON documents into rows of cells). A JSON file
that is missing or from a ``--quick`` run is an error naming it and the command to rerun:
the README quotes full runs only. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["TABLES", "Table", "check", "regenerate", "render"]

_REPO_ROOT = Path(__file__).resolve().parent.parent
README = _REPO_ROOT / "README.md"
RESULTS = _REPO_ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Table:
    """One generated README table: ``<!-- table:marker -->`` ... ``<!-- /table -->``."""

    marker: str
    files: tuple[str, ...]  # JSON files under benchmarks/results/, given to ``rows`` in order
    command: str  # the full run that writes them
    columns: tuple[str, ...]
    rows: Callable[..., list[list[str]]]  # rows(*documents) -> cells, one list per row


# ---------------------------------------------------------------- cell formats
def _points(value: float, lo: float | None = None, hi: float | None = None) -> str:
    """A fraction as signed points, with its interval when given: ``-0.6 [-4.1, +2.9]``."""
    if value == 0 and lo in (None, 0) and hi in (None, 0):
        return "0"
    text = f"{100 * value:+.1f}"
    if lo is None or hi is None:
        return text
    return f"{text} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _millions(value) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} M"


def _bytes(value) -> str:
    return "-" if value is None else f"{int(value):,}"


# ---------------------------------------------------------------- QCore (benchmarks.continual)
_QCORE_METHODS = {"none": "none", "qcore_bitflip": "QCore bit flips",
                  "bp_finetune": "back-propagation", "replay": "replay"}


def continual_rows(doc: dict) -> list[list[str]]:
    """One row per stream, head and method, and the guard's ablation (``env["unguarded"]``)
    after QCore's row."""
    out = []
    for r in doc["rows"]:
        head = [r["task"], f"W{r['weight_bits']}"]
        out.append(head + [
            _QCORE_METHODS[r["method"]], f"{r['adapted_acc']:.3f}", f"{r['final_acc']:.3f}",
            f"{r['old_acc']:.3f}", _points(r["old_vs_none"], r["old_vs_none_lo"],
                                           r["old_vs_none_hi"]),
            _millions(r["m4_instructions_per_chunk"]), _bytes(r["device_bytes"])])
        if r["method"] == "qcore_bitflip":
            off = doc["env"]["unguarded"][f"{r['task']}/w{r['weight_bits']}"]
            out.append(head + ["QCore, guard off", f"{off['adapted_acc']:.3f}",
                               f"{off['final_acc']:.3f}", f"{off['old_acc']:.3f}",
                               _points(-off["old_drop"]), "-", "-"])
    return out


# ---------------------------------------------------------------- kernels (benchmarks.kernels_m4)
def kernel_rows(bench: dict, core: dict, library: dict) -> list[list[str]]:
    """Instructions per MAC per layer, bit-widths (and scratch mode, when the rows have one:
    named unless "default") under the three flag sets, and the ratios of the Arduino core's
    flags to ours."""
    def key(r):
        return r["layer"], r["weight_bits"], r["activation_bits"], r.get("scratch_mode")

    core_by, lib_by = ({key(r): r for r in d["rows"]} for d in (core, library))
    out = []
    for r in bench["rows"]:
        base, c, lib = r["instr_per_mac"], core_by[key(r)]["instr_per_mac"], \
            lib_by[key(r)]["instr_per_mac"]
        mode = r.get("scratch_mode", "default")
        label = f"{r['layer']} W{r['weight_bits']}A{r['activation_bits']}" + (
            "" if mode == "default" else f" ({mode} scratch)")
        out.append([label, f"{base:.3f}", f"{c:.3f}", f"{c / base:.2f}", f"{lib:.3f}",
                    f"{lib / base:.2f}"])
    return out


TABLES = (
    Table("continual", ("continual.json",), "python -m benchmarks.continual",
          ("stream", "head", "method", "adapted acc", "final acc", "old acc",
           "old acc vs none, points [95 %]", "M4 instructions / chunk", "device bytes"),
          continual_rows),
    Table("kernels_m4",
          ("kernels_m4_bench.json", "kernels_m4_core.json", "kernels_m4_library.json"),
          "python -m benchmarks.kernels_m4 --flags F --out benchmarks/results/kernels_m4_F.json "
          "for F in bench, core, library",
          ("layer", "-Ofast, hard", "-Os, softfp", "ratio", "-Os + `kernel_optimize.h`",
           "ratio"),
          kernel_rows),
)


# ---------------------------------------------------------------- the machinery
def _load(name: str, results: Path, command: str) -> dict:
    path = results / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the README's tables come from committed "
                                f"full runs. Run `{command}` and commit the JSON.")
    doc = json.loads(path.read_text())
    if doc.get("quick"):
        raise ValueError(f"{path} is from a --quick run, but the README quotes full runs: run "
                         f"`{command}` (without --quick) and commit the JSON.")
    return doc


def render(table: Table, results: Path = RESULTS) -> str:
    """The markdown table of ``table`` from its JSON files under ``results``."""
    rows = table.rows(*(_load(name, results, table.command) for name in table.files))
    lines = ["| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    for row in rows:
        if len(row) != len(table.columns):
            raise ValueError(f"table {table.marker!r}: a row has {len(row)} cells for "
                             f"{len(table.columns)} columns: {row}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _block(marker: str) -> re.Pattern:
    return re.compile(rf"(<!-- table:{re.escape(marker)} -->\n)(.*?)(<!-- /table -->)",
                      re.DOTALL)


def regenerate(text: str, results: Path = RESULTS, tables=TABLES) -> str:
    """``text`` (the README) with every table of ``tables`` regenerated between its markers."""
    for table in tables:
        pattern = _block(table.marker)
        found = len(pattern.findall(text))
        if found != 1:
            raise ValueError(
                f"the README must hold one block '<!-- table:{table.marker} -->' ... "
                f"'<!-- /table -->' (each on its own line), found {found}; put it where the "
                f"{table.marker} table goes.")
        body = "\n" + render(table, results) + "\n"
        text = pattern.sub(lambda m: m.group(1) + body + m.group(3), text)
    return text


def check(readme: Path = README, results: Path = RESULTS, tables=TABLES) -> str:
    """The unified diff from ``readme`` to the regenerated one ("" when they agree)."""
    text = readme.read_text()
    new = regenerate(text, results, tables)
    return "".join(difflib.unified_diff(text.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        f"{readme.name} (committed)",
                                        f"{readme.name} (from {results.name}/*.json)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tables",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 and print a diff when the README differs; change nothing")
    parser.add_argument("--readme", type=Path, default=README, help="default: README.md")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder of the JSON files (default benchmarks/results)")
    args = parser.parse_args(argv)
    diff = check(args.readme, args.results)
    if args.check:
        if diff:
            sys.stdout.write(diff)
            print(f"\n{args.readme} differs from its tables' JSON: run `python -m "
                  "benchmarks.tables` and commit the README.", file=sys.stderr)
            return 1
        print(f"{args.readme}: {len(TABLES)} tables agree with {args.results}")
        return 0
    if diff:
        args.readme.write_text(regenerate(args.readme.read_text(), args.results))
        print(f"rewrote {len(TABLES)} tables in {args.readme}")
    else:
        print(f"{args.readme} already agrees with {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
