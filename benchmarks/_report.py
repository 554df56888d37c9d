"""Shared writer for the benchmark convention (DESIGN.md, "Benchmarks: one convention").

Every benchmark module ends with::

    write_report("kernels_m4", quick, rows, out)

which writes ``{"benchmark", "quick", "env", "rows"}`` to ``out`` (default
``benchmarks/results/<name>.json`` under the repo root), a markdown table with the
same rows beside it (``.md``), and prints the table.

Choices: ``env`` records what a figure needs to be reproduced: the versions that decide
the numbers (Python, platform, and numpy / tensorflow / tf_keras /
tensorflow_model_optimization / tflite-micro when installed), read from package metadata so
that writing a report never imports TensorFlow; the code (``git_commit``, and
``git_dirty``: whether tracked or new untracked files differed from it, so that a figure
from uncommitted code says so; both None outside a git checkout); ``seeds`` (given, or
``env_extra["seeds"]``; None for a deterministic benchmark); and ``wall_s``, the run's wall
time (given, or the seconds since this module was imported: every benchmark imports it at
its top). Rows must be flat dicts of JSON scalars: nested values would not fit a
table and would make the JSON harder to compare across runs. The columns of the
table are the union of row keys in first-seen order.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

_IMPORTED = time.perf_counter()  # the default wall-time origin of write_report

__all__ = ["collect_env", "default_out", "git_state", "markdown_table", "paired_interval",
           "write_report"]

_REPO_ROOT = Path(__file__).resolve().parent.parent
_VERSIONED_DISTRIBUTIONS = (
    "numpy",
    "tensorflow",
    "tensorflow-cpu",
    "tf-keras",
    "tensorflow-model-optimization",
    "tflite-micro",
)
_SCALARS = (str, int, float, bool, type(None))


def default_out(name: str) -> Path:
    """Where ``write_report(name, ..., out=None)`` writes: ``benchmarks/results/<name>.json``."""
    return _REPO_ROOT / "benchmarks" / "results" / f"{name}.json"


def git_state(root: Path = _REPO_ROOT) -> dict:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` of the checkout at ``root``
    (dirty: a tracked file modified or an untracked, not ignored, file present)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def collect_env(extra: dict | None = None) -> dict:
    """Versions, platform and git state of this run; ``extra`` (e.g. compiler versions) is
    merged in."""
    env: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        **git_state(),
    }
    for dist in _VERSIONED_DISTRIBUTIONS:
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if extra:
        env.update(extra)
    return env


def paired_interval(diffs) -> tuple[float, float | None, float | None]:
    """Mean of paired per-seed differences and its two-sided 95 % Student-t interval
    (``None`` ends with fewer than two seeds)."""
    from scipy import stats

    d = [float(v) for v in diffs]
    mean = sum(d) / len(d)
    if len(d) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, len(d) - 1)) * float(stats.sem(d))
    return mean, mean - half, mean + half


def _format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        if set(value) == {"mean", "lo", "hi"}:  # a paired difference and its interval
            return f"{_format_cell(value['mean'])} [{_format_cell(value['lo'])}, " \
                   f"{_format_cell(value['hi'])}]"
        return ", ".join(f"{k}={_format_cell(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict]) -> str:
    """A GitHub markdown table of ``rows``; columns are the row keys in first-seen order."""
    if not rows:
        return "(no rows)\n"
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_format_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _validate(name: str, rows) -> None:
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ValueError(
            f"benchmark name must be a non-empty snake_case string, got {name!r}; "
            "use the module name, e.g. 'kernels_m4'."
        )
    if not isinstance(rows, list):
        raise TypeError(f"rows must be a list of dicts, got {type(rows).__name__}.")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"rows[{i}] must be a dict, got {type(row).__name__}.")
        for key, value in row.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"rows[{i}] has a non-string key {key!r}; keys must be snake_case str."
                )
            inner = value.values() if isinstance(value, dict) else (value,)
            if not all(isinstance(v, _SCALARS) for v in inner) or (
                isinstance(value, dict) and not all(isinstance(k, str) for k in value)
            ):
                raise TypeError(
                    f"rows[{i}][{key!r}] is a {type(value).__name__}; row values must be "
                    "str, int, float, bool, None or a dict of those by str keys (e.g. a paired "
                    "difference {'mean', 'lo', 'hi'}); flatten deeper nesting into more keys."
                )


def write_report(
    name: str,
    quick: bool,
    rows: list[dict],
    out: str | Path | None = None,
    *,
    env_extra: dict | None = None,
    seeds=None,
    wall_s: float | None = None,
) -> Path:
    """Write ``rows`` as ``<out>.json`` + ``<out>.md`` and print the table; return the JSON path.

    ``out`` defaults to ``default_out(name)``; its parent folders are created.
    ``env_extra`` adds benchmark-specific environment facts (compiler, flags) to ``env``.
    ``seeds`` (default ``env_extra["seeds"]``) and ``wall_s`` (default: the seconds since
    this module was imported) go to ``env`` too (module docstring).
    """
    _validate(name, rows)
    if wall_s is None:
        wall_s = time.perf_counter() - _IMPORTED
    if seeds is None:
        seeds = (env_extra or {}).get("seeds")
    if isinstance(seeds, int):
        seeds = [seeds]
    env_extra = {**(env_extra or {}), "seeds": None if seeds is None else [int(s) for s in seeds],
                 "wall_s": round(float(wall_s), 1)}
    out_path = Path(out) if out is not None else default_out(name)
    if out_path.suffix != ".json":
        raise ValueError(
            f"out must name a .json file, got {str(out_path)!r}; e.g. --out results/{name}.json"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "quick": bool(quick), "env": collect_env(env_extra), "rows": rows}
    out_path.write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
    table = markdown_table(rows)
    md_path = out_path.with_suffix(".md")
    header = f"# {name}{' (quick)' if quick else ''}\n\n"
    md_path.write_text(header + table)
    sys.stdout.write(table)
    sys.stdout.write(f"\nwrote {out_path} and {md_path}\n")
    return out_path


def save_figure(fig, path) -> Path:
    """Save a matplotlib figure at ``path`` (folders made as needed), close it, return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
