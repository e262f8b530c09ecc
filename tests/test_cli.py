"""The `dlcourse` command: doctor, lab, and one-line errors."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dlcourse.cli import REPO_ROOT, main


def test_doctor_prints_table_and_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path / "empty"))
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for needle in ["torch", "torchvision", "device", "chosen", str(tmp_path / "empty"), "digits", "checkpoints"]:
        assert needle in out
    assert "missing:" in out
    assert f"dataset cifar10" in out and str(tmp_path / "empty" / "cifar-10-batches-py") in out


def test_doctor_sees_present_data(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"x")
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "dataset fashion-mnist" not in out and "dataset mnist" in out


def test_bad_device_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DLCOURSE_DEVICE", "tpu9")
    assert main(["doctor"]) == 0  # doctor reports the problem instead of failing
    assert "unknown device 'tpu9'" in capsys.readouterr().out


def test_unknown_command_exits_nonzero():
    proc = subprocess.run([sys.executable, "-m", "dlcourse", "fly"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_lab_serves_the_course_map(tmp_path):
    port, token = _free_port(), "dlcourse-test"
    env = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlcourse", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        page = api = None
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                base = f"http://127.0.0.1:{port}"
                # a bare "/" (what a user opens from the printed URL's host) must land on the course map
                opened = urllib.request.urlopen(f"{base}/?token={token}", timeout=5)
                landed, page = opened.geturl(), opened.read().decode()
                api = urllib.request.urlopen(f"{base}/api/contents/course/README.md?token={token}", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, proc.stdout.read().decode() if proc.poll() is not None else "server did not answer"
        assert "JupyterLab" in page
        assert "/lab/tree/course/README.md" in landed, landed
        course_map = (REPO_ROOT / "course" / "README.md").read_text()
        assert course_map.splitlines()[0] in api.replace("\\n", "\n")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
