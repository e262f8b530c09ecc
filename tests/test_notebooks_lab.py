"""What keeps a notebook right in JupyterLab, without a browser (tests/browser/ checks the same things in one):
the pre-save hook that leaves no widget view without saved state, the course kernel's version-free language_info,
the settings files, and the lecture-hall layout of the players."""

import json

import pytest

from dlcourse import notebooks as nbs

VIEW, STATE = nbs.WIDGET_VIEW_KEY, nbs.WIDGET_STATE_KEY


def _notebook(saved_ids, shown_ids, picture=True):
    outputs = []
    for mid in shown_ids:
        data = {VIEW: {"model_id": mid, "version_major": 2, "version_minor": 0}, "text/plain": "FramePlayer(...)"}
        if picture:
            data["image/png"] = "iVBORw0KGgo="
        outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
    return {"cells": [{"cell_type": "code", "outputs": outputs, "source": "", "metadata": {}}],
            "metadata": {"widgets": {STATE: {"state": {m: {"model_name": "ImageModel"} for m in saved_ids},
                                             "version_major": 2, "version_minor": 0}}}}


def test_views_without_saved_state_fall_back_to_their_picture():
    nb = _notebook(saved_ids=["a"], shown_ids=["a", "b"])
    assert nbs.strip_unsaved_widget_views(nb) == 1
    first, second = nb["cells"][0]["outputs"]
    assert VIEW in first["data"]                                   # its state is saved: the widget stays
    assert VIEW not in second["data"] and "image/png" in second["data"]  # a live kernel's widget: the picture
    assert nbs.strip_unsaved_widget_views(nb) == 0                 # idempotent


def test_pre_save_hook_edits_notebooks_only():
    nb = _notebook(saved_ids=[], shown_ids=["x"])
    nbs.pre_save_hook(model={"type": "notebook", "content": nb}, path="a.ipynb", contents_manager=None)
    assert VIEW not in nb["cells"][0]["outputs"][0]["data"]
    text = {"type": "file", "content": "unchanged"}
    nbs.pre_save_hook(model=text, path="a.txt", contents_manager=None)
    assert text["content"] == "unchanged"
    nbs.pre_save_hook(model={"type": "notebook", "content": {"cells": []}})  # no metadata: nothing to do


def test_course_kernel_reports_exactly_what_the_notebooks_store():
    pytest.importorskip("ipykernel")
    kernel = nbs.CourseKernel
    assert "version" not in kernel.language_info
    assert kernel.language_info == nbs._LANGUAGE_INFO  # else JupyterLab marks every notebook modified
    from ipykernel.ipkernel import IPythonKernel

    assert issubclass(kernel, IPythonKernel) and nbs.CourseKernel is kernel  # one class, found by import string


def test_install_kernel_runs_the_course_kernel(tmp_path):
    pytest.importorskip("ipykernel")
    folder = nbs.install_kernel(tmp_path)
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["display_name"] == "Python (dlcourse)" and folder.name == "dlcourse"
    assert spec["argv"][-1] == "--IPKernelApp.kernel_class=dlcourse.notebooks.CourseKernel"
    nbs.install_kernel(tmp_path)  # again: the option is not repeated
    assert sum("kernel_class" in a for a in json.loads((folder / "kernel.json").read_text())["argv"]) == 1


def test_lab_settings_merge_and_register_the_hook(tmp_path):
    server = nbs.server_config_path(tmp_path)
    server.parent.mkdir(parents=True)
    server.write_text(json.dumps({"ServerApp": {"ip": "127.0.0.1"}}))
    nbs.write_lab_settings(tmp_path)
    config = json.loads(server.read_text())
    assert config["ServerApp"] == {"ip": "127.0.0.1"}  # the user's keys stay
    assert config["ContentsManager"]["pre_save_hook"] == "dlcourse.notebooks.pre_save_hook"
    server.write_text("[1, 2]")
    with pytest.raises(nbs.ConfigError, match="expected a JSON object"):
        nbs.write_lab_settings(tmp_path)


def test_langevin_player_controls_fit_their_labels_on_one_wrapping_row():
    pytest.importorskip("ipywidgets")
    from dlcourse.viz.langevin import LangevinPlayer

    player = LangevinPlayer(step_sizes=(0.002, 0.5), n_steps=(20,), sigmas=(0.0, 3.0), annealed=(False, True),
                            n_chains=20, n_frames=2)
    row, image = player.widget.children
    assert row.layout.flex_flow == "row wrap"  # one row that wraps, not a line per control
    inside = {w for child in row.children for w in getattr(child, "children", ())}
    assert set(player.controls.values()) <= inside  # each control sits in the row, beside its name
    for control in player.controls.values():
        width = int(control.style.button_width.rstrip("px"))
        longest = max(len(label) for label in control._options_labels)
        assert width >= 8 * longest + 20, (control.description, width, longest)  # "0.002", "annealed" fit
    assert player.player.label.layout.flex == "0 0 auto"  # the caption never shrinks to "step 0 / 2…"
    assert int(image.layout.width.rstrip("px")) >= 320


def test_frame_text_is_lecture_hall_sized():
    from dlcourse.viz import player

    assert player.TICK_PT >= 12 and player.TITLE_PT >= player.TICK_PT and player.TEXT_PT >= 12
    assert player.HALL_RC["xtick.labelsize"] >= 12
