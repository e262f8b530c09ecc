"""The bubblewrap sandbox: what a confined worker sees, and what the grader does where bwrap is missing or cannot
create namespaces (simulated with a fake bwrap through DLCOURSE_BWRAP)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from dlcourse.cli import main
from dlcourse.grading import sandbox
from dlcourse.grading.grader import Grader

ROOT = Path(__file__).resolve().parents[1]


from grading_fixtures import a0_submissions as subs  # noqa: E402
from grading_fixtures import attacks  # noqa: E402
needs_sandbox = pytest.mark.skipif(not sandbox.status().usable,
                                   reason=f"bubblewrap cannot run here: {sandbox.status().reason}")


def _fake_bwrap(tmp_path: Path, version: str = "bubblewrap 0.8.0", fails: str | None = None) -> Path:
    """A stand-in for bwrap: answers --version, and fails every sandbox with ``fails`` on stderr."""
    script = tmp_path / "bwrap"
    body = f'if [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n'
    body += f'echo "{fails}" >&2; exit 1\n' if fails else 'exit 1\n'
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


NO_NAMESPACES = "bwrap: No permissions to create new namespace, likely because the kernel does not allow " \
                "non-privileged user namespaces."


def test_describe_and_status_with_bwrap_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(sandbox.BWRAP_ENV, str(tmp_path / "no-such-bwrap"))
    st = sandbox.status()
    assert not st.usable and "not an executable file" in st.reason
    line = sandbox.describe()
    assert line.startswith("NOT confined") and "apt-get install bubblewrap" in line and "--no-sandbox" in line


def test_bwrap_present_but_without_namespaces(tmp_path, monkeypatch):
    monkeypatch.setenv(sandbox.BWRAP_ENV, str(_fake_bwrap(tmp_path, fails=NO_NAMESPACES)))
    st = sandbox.status()
    assert not st.usable and st.version == "0.8.0"
    assert "installed but cannot create namespaces here" in st.reason and "No permissions" in st.reason
    with pytest.raises(sandbox.SandboxUnavailable) as info:
        sandbox.require()
    message = str(info.value)
    assert "\n" not in message and "user namespaces" in message and "--no-sandbox" in message
    assert "apt-get install" not in message  # it is installed: installing it again would not help


def test_too_old_bwrap(tmp_path, monkeypatch):
    monkeypatch.setenv(sandbox.BWRAP_ENV, str(_fake_bwrap(tmp_path, version="bubblewrap 0.4.1")))
    st = sandbox.status()
    assert not st.usable and "too old" in st.reason and "upgrade bubblewrap" in sandbox.describe()


def test_without_a_working_sandbox_hidden_and_folders_refuse(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(sandbox.BWRAP_ENV, str(_fake_bwrap(tmp_path, fails=NO_NAMESPACES)))
    folder = tmp_path / "hand-in"
    folder.mkdir()
    sub = folder / "alice.ipynb"
    sub.write_text(subs.build(subs.with_bugs({"score": subs.BUGS["score"][0]})))
    out = tmp_path / "grades"
    for argv in (["grade", str(sub), "--hidden"], ["grade", str(folder), "--hidden", "--out", str(out)],
                 ["grade", str(folder), "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "bubblewrap" in err[0] and "--no-sandbox" in err[0]
        assert "cannot create namespaces here" in err[0]
    assert not out.exists()
    # a student's own public check still runs, unconfined, and says so
    assert main(["grade", str(sub), "--json", "--timeout", "10"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["score"] == 8 and data["sandbox"].startswith("none:")
    assert any("graded without a sandbox" in n for n in data["notes"])
    # the instructor may insist: every report then says so
    assert main(["grade", str(folder), "--hidden", "--out", str(out), "--no-sandbox", "--timeout", "10"]) == 0
    saved = json.loads((out / "alice.json").read_text())
    assert saved["score"] == 8 and saved["sandbox"] == "none: --no-sandbox"
    assert any("graded without a sandbox (--no-sandbox)" in n for n in saved["notes"])
    assert "graded without a sandbox" in capsys.readouterr().out


WORKER_ENV = {"PATH", "LANG", "HOME", "TMPDIR", "TEMP", "TMP", "IPYTHONDIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "DLCOURSE_DEVICE",
              "CUDA_VISIBLE_DEVICES", "MPLBACKEND", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
              "PYTHONPATH", "PWD", "SHLVL", "_", "OLDPWD", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK",
              "TF_CPP_MIN_LOG_LEVEL", "JPY_PARENT_PID", "CLICOLOR", "PAGER", "GIT_PAGER", "TERM", "COLUMNS", "LINES",
              "FORCE_COLOR", "MPLCONFIGDIR"}

REPORT_ENV = '''import os, json
raise RuntimeError("ENV-KEYS " + json.dumps(sorted(os.environ)))'''


@pytest.mark.parametrize("mode", [pytest.param("required", marks=needs_sandbox), "off"])
def test_the_worker_gets_a_clean_environment(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("DLCOURSE_TEST_TOKEN", "t0ken-that-must-not-leak")
    path = tmp_path / "env.ipynb"
    path.write_text(subs.build(extra_cells=[("end", REPORT_ENV)], solved=False))
    result = Grader(sandbox=mode, time_limit=10, cell_time_limit=30).grade(path)
    message = next(c.message for c in result.cells if "ENV-KEYS" in c.message)
    keys = set(json.loads(message.split("ENV-KEYS ", 1)[1].split(" (cell", 1)[0]))
    assert keys <= WORKER_ENV, keys - WORKER_ENV
    assert "DLCOURSE_TEST_TOKEN" not in keys and "t0ken" not in message


INSPECT = '''
unhook()
import resource, socket, sys
found = {{}}
found["uid"] = os.getuid()
found["root"] = sorted(os.listdir("/"))
found["repo"] = sorted(os.listdir({repo!r})) if os.path.isdir({repo!r}) else None
found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
found["cap_eff"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
st = os.statvfs("/tmp")
found["scratch_mib"] = st.f_blocks * st.f_frsize >> 20
try:
    open(sys.prefix + "/pwned", "w")
    found["venv"] = "writable"
except OSError as exc:
    found["venv"] = exc.errno
found["limits"] = {{k: resource.getrlimit(getattr(resource, k))[0] for k in
                   ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_NOFILE")}}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    found["net"] = "connected"
except OSError as exc:
    found["net"] = type(exc).__name__
found["interfaces"] = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
RESULTS.append("FOUND " + json.dumps(found))
'''


@needs_sandbox
def test_sandbox_confines_the_worker_even_with_the_hook_switched_off(tmp_path):
    cell = attacks.attack_cell(INSPECT, unhook=True, repo=str(ROOT))
    path = tmp_path / "inspect.ipynb"
    path.write_text(subs.build(extra_cells=[("end", cell)], solved=False))
    result = Grader(sandbox="required", time_limit=10, cell_time_limit=30, scratch_bytes=64 * 2**20).grade(path)
    message = next(c.message for c in result.cells if "FOUND" in c.message)
    found = json.loads(message.split("FOUND ", 1)[1].split(" (cell", 1)[0].split(" | ")[0])
    assert found["uid"] == sandbox.SANDBOX_UID
    assert found["repo"] == sorted(p.name for p in [ROOT / "dlcourse", ROOT / ".venv"] if p.exists()) or \
        set(found["repo"]) <= {"dlcourse", ".venv"}  # only the package (and the environment if it lives there)
    assert "home" not in found["root"] and "mnt" not in found["root"] and "srv" not in found["root"]
    assert len(found["pids"]) <= 4  # bwrap's init, the zygote, this worker (its own PID namespace)
    assert found["cap_eff"] == "0000000000000000"
    assert found["scratch_mib"] <= 64
    assert found["venv"] == 30  # EROFS: the environment is read-only
    assert found["net"] in ("OSError", "ConnectionRefusedError", "TimeoutError") and found["net"] != "connected"
    limits = found["limits"]
    assert 0 < limits["RLIMIT_AS"] < 2**62 and limits["RLIMIT_FSIZE"] == 64 * 2**20
    assert 0 < limits["RLIMIT_CPU"] < 10**6 and limits["RLIMIT_NPROC"] == 64 and limits["RLIMIT_NOFILE"] == 1024
    assert result.sandbox.startswith("bubblewrap")


@needs_sandbox
def test_a_sandboxed_master_still_scores_full_marks_and_no_process_remains(tmp_path):
    sub = tmp_path / "master.ipynb"
    sub.write_bytes((ROOT / "solutions" / "a0_sampling.ipynb").read_bytes())
    result = Grader(hidden=True, sandbox="required").grade(sub)
    assert result.score == result.max_score and result.sandbox.startswith("bubblewrap")


@needs_sandbox
def test_a_python_tree_under_the_scratch_folder_stays_visible_and_read_only(tmp_path, monkeypatch):
    # a course cloned under /tmp has its venv and package there: the sandbox's /tmp must not hide them
    import subprocess

    tree = tmp_path / "course" / ".venv"
    tree.mkdir(parents=True)
    (tree / "marker").write_text("visible\n")
    assert str(tree.resolve()).startswith(sandbox.SCRATCH + "/")
    trees = sandbox.python_trees()
    monkeypatch.setattr(sandbox, "python_trees", lambda: trees + [str(tree.resolve())])
    script = f"cat {tree}/marker; {{ echo x > {tree}/new; }} 2>/dev/null && echo writable || echo read-only"
    argv = sandbox.bwrap_argv(["/bin/sh", "-c", script], scratch_bytes=2**20)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["visible", "read-only"], out.stderr
    assert not (tree / "new").exists()
