"""The notebook pipeline: sources and notebooks stay paired, and execution writes byte-identical files."""

import json
import textwrap
from pathlib import Path

import pytest

from dlcourse import notebooks
from dlcourse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = [ROOT / "lectures", ROOT / "solutions"]

TINY = textwrap.dedent(
    '''\
    # %% [markdown]
    # # A tiny notebook
    # Used by the tests of `dlcourse.notebooks`.

    # %%
    import numpy as np
    print("sum of squares:", sum(i * i for i in range(10)))
    for i in range(3):
        print("line", i, flush=True)

    # %% tags=["nbval-ignore-output"]
    from dlcourse.viz import FramePlayer
    FramePlayer([np.full((4, 4), 40 * i, dtype=np.uint8) for i in range(3)], labels=["a", "b", "c"])

    # %%
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.5, 1.5), dpi=50)
    ax.plot([0, 1, 4]);
    '''
)


def test_sources_and_notebooks_are_paired():
    problems = notebooks.check_pairs([d for d in NOTEBOOK_DIRS if d.exists()])
    assert not problems, "out of sync (refresh with `make notebooks`):\n" + "\n".join(map(str, problems))


def _committed_notebooks():
    return sorted(p for d in NOTEBOOK_DIRS if d.exists() for p in d.glob("*.ipynb"))


@pytest.mark.parametrize("path", _committed_notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_notebooks_are_normalized(path):
    """Written by `make notebooks`, not saved from JupyterLab: stable ids, no timings, modest size."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    width = max(2, len(str(len(nb["cells"]) - 1)))
    assert [c["id"] for c in nb["cells"]] == [f"cell-{i:0{width}d}" for i in range(len(nb["cells"]))], (
        f"{path.name} was not written by `python -m dlcourse.notebooks execute`"
    )
    assert all("execution" not in c["metadata"] for c in nb["cells"])
    assert nb["metadata"]["kernelspec"]["name"] == "dlcourse"
    assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB: shrink its figures"


def test_execute_twice_is_byte_identical(tmp_path):
    source = tmp_path / "tiny.py"
    source.write_text(TINY)
    target, seconds, changed = notebooks.execute_and_write(source, timeout=120)
    assert changed and target == tmp_path / "tiny.ipynb" and seconds > 0
    first = target.read_bytes()
    target2, _, changed2 = notebooks.execute_and_write(source, timeout=120)
    assert target2.read_bytes() == first
    assert not changed2

    nb = json.loads(first)
    assert [c["id"] for c in nb["cells"]] == ["cell-00", "cell-01", "cell-02", "cell-03"]
    assert nb["metadata"]["kernelspec"]["name"] == "dlcourse"
    assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
    assert "version" not in nb["metadata"]["language_info"]
    assert all("execution" not in c["metadata"] for c in nb["cells"])
    assert nb["cells"][2]["metadata"]["tags"] == ["nbval-ignore-output"]
    # Streams are merged into one output, whatever the kernel's flushing did.
    (stream,) = nb["cells"][1]["outputs"]
    assert "".join(stream["text"]) == "sum of squares: 285\nline 0\nline 1\nline 2\n"
    # Widget model ids are renumbered, so the stored widget state is deterministic too.
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    view = nb["cells"][2]["outputs"][0]["data"]["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] in state
    assert notebooks.check_pairs([tmp_path]) == []


def test_check_pairs_reports_edits_and_orphans(tmp_path):
    source = tmp_path / "tiny.py"
    source.write_text(TINY)
    notebooks.execute_and_write(source, timeout=120)
    source.write_text(TINY.replace("range(10)", "range(11)"))
    (problem,) = notebooks.check_pairs([tmp_path])
    assert problem.path == source and "cell 1 differs (source)" in problem.problem

    source.write_text(TINY.replace('tags=["nbval-ignore-output"]', 'tags=["nbval-skip"]'))
    (problem,) = notebooks.check_pairs([tmp_path])
    assert "(tags)" in problem.problem

    (tmp_path / "new.py").write_text("# %%\nprint(1)\n")
    (tmp_path / "_helper.py").write_text("X = 1\n")  # helpers are not notebooks
    source.unlink()
    found = {p.path.name: p.problem for p in notebooks.check_pairs([tmp_path])}
    assert set(found) == {"new.py", "tiny.ipynb"}
    assert "has no new.ipynb" in found["new.py"] and "has no source" in found["tiny.ipynb"]
    assert notebooks.main(["check-pairs", str(tmp_path)]) == 1


def test_failing_cell_is_named(tmp_path, capsys):
    source = tmp_path / "broken.py"
    source.write_text("# %%\nx = 1\n\n# %%\ny = x / 0\n")
    with pytest.raises(notebooks.ExecutionFailed, match=r"broken.py: cell 1, line 4 \('y = x / 0'\) raised ZeroDivisionError"):
        notebooks.execute_and_write(source, timeout=120)
    assert not source.with_suffix(".ipynb").exists()
    assert notebooks.main(["execute", str(source)]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err.strip().splitlines()[-1]


def test_lab_settings_merge(tmp_path):
    path = notebooks.lab_settings_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
        "@jupyterlab/docmanager-extension:plugin": {"autosave": False, "defaultViewers": {"csv": "CSVTable"}},
    }))
    assert notebooks.write_lab_settings(tmp_path) == path
    settings = json.loads(path.read_text())
    assert settings["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    doc = settings["@jupyterlab/docmanager-extension:plugin"]
    assert doc == {"autosave": False, "defaultViewers": {"csv": "CSVTable", "markdown": "Markdown Preview"}}
    notebooks.write_lab_settings(tmp_path)
    assert json.loads(path.read_text()) == settings


def test_lab_settings_refuses_to_clobber_a_broken_file(tmp_path):
    path = notebooks.lab_settings_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        notebooks.write_lab_settings(tmp_path)
    assert path.read_text() == "{not json"
