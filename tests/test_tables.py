"""benchmarks.tables: the README's generated tables agree with the committed JSON, and --check
fails (with a diff) on a README that drifted; missing blocks and quick runs are refused."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import tables


def test_the_readme_agrees_with_the_committed_results(capsys):
    assert tables.check() == ""
    assert tables.main(["--check"]) == 0
    readme = tables.README.read_text()
    for table in tables.TABLES:  # every table is generated, and from full runs
        assert readme.count(f"<!-- table:{table.marker} -->") == 1
        assert all(not json.loads((tables.RESULTS / f).read_text())["quick"]
                   for f in table.files)


def test_check_fails_with_a_diff_on_a_changed_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    text = tables.README.read_text()
    row = "| imu_watch | W4 | QCore bit flips | 0.761 |"
    assert row in text
    readme.write_text(text.replace(row, "| imu_watch | W4 | QCore bit flips | 0.861 |"))
    assert tables.main(["--check", "--readme", str(readme)]) == 1
    diff = capsys.readouterr().out
    assert "-| imu_watch | W4 | QCore bit flips | 0.861 |" in diff
    assert "+| imu_watch | W4 | QCore bit flips | 0.761 |" in diff

    assert tables.main(["--readme", str(readme)]) == 0  # regenerating puts it back
    assert tables.check(readme) == "" and row in readme.read_text()


def test_a_missing_block_or_a_quick_run_is_refused(tmp_path):
    text = tables.README.read_text()
    with pytest.raises(ValueError, match="one block '<!-- table:continual -->'.*found 0"):
        tables.regenerate(text.replace("<!-- table:continual -->", ""))

    results = tmp_path / "results"
    shutil.copytree(tables.RESULTS, results)
    doc = json.loads((results / "continual.json").read_text())
    (results / "continual.json").write_text(json.dumps(doc | {"quick": True}))
    with pytest.raises(ValueError, match="continual.json is from a --quick run.*"
                                         "python -m benchmarks.continual"):
        tables.regenerate(text, results)
    (results / "continual.json").unlink()
    with pytest.raises(FileNotFoundError, match="continual.json is missing"):
        tables.regenerate(text, results)
