"""Malformed notebooks from a generator (random JSON shapes, wrong types, huge cells, 10^5 cells, mutations of a
real submission) never abort a folder run and never exceed the submission budget: each gets its row."""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path

from dlcourse.cli import main

ROOT = Path(__file__).resolve().parents[1]
from grading_fixtures import a0_submissions as subs  # noqa: E402

BUDGET_S = 20.0


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "float", "none", "bool", "list", "dict"] if depth < 4 else ["str", "int", "none"]
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["", "x", "code", "markdown", "%%bash", "../../etc/passwd", "\u2603" * rng.randint(1, 5)])
    if kind == "int":
        return rng.choice([0, -1, 4, 2**63, 10**30])
    if kind == "float":
        return rng.choice([0.5, float("1e308"), -0.0])
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["cells", "source", "metadata", "cell_type", "dlcourse", "nbgrader", "k"]):
            _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _mutate(nb: dict, rng: random.Random) -> dict:
    """Replace one randomly chosen value of a real notebook (a key's value, a cell, a source line)."""
    nb = json.loads(json.dumps(nb))
    targets = [p for p in _paths(nb) if p and (p[0] in ("cells", "metadata", "nbformat"))]
    path = rng.choice(targets)
    node = nb
    for key in path[:-1]:
        node = node[key]
    if rng.random() < 0.2 and isinstance(node, dict):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = _random_value(rng)
    return nb


def generate(seed: int = 0) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    base = json.loads(subs.build(solved=False))
    out: list[tuple[str, bytes]] = []
    for i in range(12):
        out.append((f"random_json_{i}", json.dumps(_random_value(rng)).encode()))
    for i in range(16):
        out.append((f"mutated_{i}", json.dumps(_mutate(base, rng)).encode()))
    wrong = json.loads(json.dumps(base))
    wrong["cells"][2]["source"] = {"a": 1}
    out.append(("dict_source", json.dumps(wrong).encode()))
    wrong = json.loads(json.dumps(base))
    wrong["metadata"]["dlcourse"] = ["a0_sampling"]
    out.append(("list_dlcourse_metadata", json.dumps(wrong).encode()))
    wrong = json.loads(json.dumps(base))
    wrong["cells"][3]["metadata"] = "nbgrader"
    out.append(("string_cell_metadata", json.dumps(wrong).encode()))
    huge = json.loads(json.dumps(base))
    huge["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "source": "# " + "x" * 3_000_000})
    out.append(("huge_cell", json.dumps(huge).encode()))
    many = {"nbformat": 4, "nbformat_minor": 5, "metadata": base["metadata"],
            "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": "pass"}] * 100_000}
    out.append(("hundred_thousand_cells", json.dumps(many).encode()))
    out.append(("deep_nesting", b"[" * 100_000 + b"]" * 100_000))
    out.append(("not_utf8", b"\xff\xfe\x00garbage"))
    out.append(("empty", b""))
    out.append(("json_null", b"null"))
    out.append(("nbformat_3", json.dumps({**base, "nbformat": 3}).encode()))
    thousand = json.loads(json.dumps(base))
    thousand["cells"] += [{"cell_type": "code", "metadata": {}, "outputs": [], "source": f"v{i} = {i}"}
                          for i in range(1000)]
    out.append(("thousand_small_cells", json.dumps(thousand).encode()))
    return out


def test_generated_malformed_notebooks_never_abort_a_folder_run(tmp_path, capsys):
    folder = tmp_path / "hand-in"
    folder.mkdir()
    notebooks = generate(seed=12)
    for name, data in notebooks:
        (folder / f"{name}.ipynb").write_bytes(data)
    (folder / "honest.ipynb").write_text(subs.build())
    out = tmp_path / "grades"
    t0 = time.monotonic()
    code = main(["grade", str(folder), "--hidden", "--no-sandbox", "--out", str(out), "--master", str(subs.MASTER),
                 "--budget", str(BUDGET_S), "--timeout", "5", "--cell-timeout", "10"])
    elapsed = time.monotonic() - t0
    assert code == 0
    for name, _ in notebooks + [("honest", b"")]:
        rows = list(csv.reader((out / f"{name}.csv").open()))
        assert rows[0][0] == "submission" and rows[-1][2] == "total", name
        data = json.loads((out / f"{name}.json").read_text())
        assert data["seconds"] <= BUDGET_S + 60, (name, data["seconds"])  # the budget, plus starting a worker
        if data["error"]:
            assert data["score"] == 0 and "\n" not in data["error"] and len(data["error"]) < 600
    assert json.loads((out / "honest.json").read_text())["score"] == 10
    structural = [n for n, _ in notebooks if json.loads((out / f"{n}.json").read_text())["error"]]
    for name in ("dict_source", "list_dlcourse_metadata", "string_cell_metadata", "huge_cell",
                 "hundred_thousand_cells", "deep_nesting", "not_utf8", "empty", "json_null", "nbformat_3"):
        assert name in structural, name
    assert json.loads((out / "hundred_thousand_cells.json").read_text())["seconds"] < 5
    assert elapsed < 600
    summary = capsys.readouterr().out
    assert "honest.ipynb" in summary and "error:" in summary
