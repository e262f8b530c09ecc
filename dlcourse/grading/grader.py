"""The trusted side of grading: run a submission in a worker process, then its tests here, against proxies.

`Grader.grade(path)` grades one notebook:

1. the submission's bytes are read once (its sha256 is recorded before and compared after; nothing writes it);
2. a fresh worker process (`dlcourse.grading.worker`, hardened before any student code runs; on Linux forked
   from a zygote that imported torch and IPython once, so a submission costs well under a second) executes the
   submission's code cells one by one, except its test cells; a cell that raises, exits or runs past the cell
   time limit is reported and skipped (the worker is killed and restarted with the cells that ran);
3. the test cells come from the master (``solutions/<name>.py``; public and, with ``hidden=True``, hidden tests)
   or, when there is no master (a student checking their work), from the pristine student version in
   ``assignments/``; never from the submission itself. They run *in this process*, in a namespace made of the
   master's ``grading-setup`` cell plus, for each free name the test uses that the setup does not define, the
   student's value (tensors, numbers, lists... decoded by `dlcourse.grading.protocol.unpack`) or, for a
   function, a `StudentFunction` proxy that calls it in the worker. So student code never touches the checks,
   the tests, the expected values or the result file;
4. each question has a time limit: when a call into the worker runs past it, the worker is killed and restarted
   and the question fails with "took longer than N s".

Results are plain data (`GradeResult`), written by `write_result` to a folder the caller chooses.
"""

from __future__ import annotations

import ast
import atexit
import builtins
import csv
import functools
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DlcourseError
from . import markers
from .checks import CheckFailed
from .protocol import (MAX_MESSAGE_BYTES, ChannelClosed, ChannelTimeout, ProtocolError, recv_frame_until,
                       send_frame_until, unpack)

__all__ = ["REPO_ROOT", "GradeResult", "QuestionResult", "CellResult", "Grader", "StudentError", "StudentFunction",
           "find_assignment", "write_result", "format_table"]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180.0
OUTPUT_NOTE_BYTES = 100_000
_WORKER_CMD = "import sys; from dlcourse.grading.worker import main; sys.exit(main(sys.argv[1:]))"


# --------------------------------------------------------------------------------------------------------------
# results


@dataclass
class QuestionResult:
    """One question: ``status`` is passed, failed, not implemented, blocked, timeout, crashed or error."""

    id: str
    points: float
    max_points: float
    status: str
    message: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class CellResult:
    """A code cell of the submission that did not run cleanly, or printed a lot."""

    cell: int
    status: str  # error, timeout, crashed, ok
    message: str = ""
    output_bytes: int = 0
    output: str = ""


@dataclass
class GradeResult:
    submission: str
    assignment: str
    hidden: bool
    sha256: str
    score: float = 0.0
    max_score: float = 0.0
    questions: list[QuestionResult] = field(default_factory=list)
    cells: list[CellResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        for q, qd in zip(self.questions, d["questions"]):
            qd["passed"] = q.passed
        return d


# --------------------------------------------------------------------------------------------------------------
# starting workers


def _worker_env() -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DLCOURSE_DEVICE": "cpu", "MPLBACKEND": "Agg",
                "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": "", "PYTHONDONTWRITEBYTECODE": "1"})
    env.pop("PYTHONSTARTUP", None)
    # the worker imports the same dlcourse as this process (a student bundle need not be installed)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


class _Spawner:
    """Starts worker processes: forked from a zygote that imported torch and IPython once (Linux), else one
    fresh interpreter each. Each worker serves exactly one submission."""

    def __init__(self, preload: list[str] | None = None):
        from .worker import BASE_PRELOAD

        self.preload = json.dumps(list(preload or BASE_PRELOAD))
        self._sock: socket.socket | None = None
        self._zygote: subprocess.Popen | None = None
        self._direct: dict[int, subprocess.Popen] = {}
        self._cwd = tempfile.mkdtemp(prefix="dlcourse-zygote-")
        self.use_zygote = sys.platform.startswith("linux") and hasattr(socket, "send_fds")

    def _start_zygote(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._zygote = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CMD, "zygote", str(child.fileno()), self.preload],
                pass_fds=(child.fileno(),), env=_worker_env(), cwd=self._cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            child.close()
        parent.settimeout(START_TIMEOUT_S)
        try:
            ready = parent.recv(1)
        except OSError:
            ready = b""
        if ready != b"R":
            self._zygote.kill()
            parent.close()
            raise DlcourseError("the grader's worker process did not start (is the environment complete? "
                                "try `dlcourse doctor`)")
        parent.settimeout(60)
        self._sock = parent

    def spawn(self) -> tuple[int, int, int]:
        """(pid, read fd, write fd) of a new worker; the fds are the parent's ends of two pipes."""
        if os.name != "posix":
            raise DlcourseError("the grader needs Linux or macOS (it passes pipes to a worker process); on Windows "
                                "run it in WSL")
        to_w_r, to_w_w = os.pipe()
        from_w_r, from_w_w = os.pipe()
        try:
            if self.use_zygote:
                if self._sock is None or (self._zygote is not None and self._zygote.poll() is not None):
                    self._start_zygote()
                socket.send_fds(self._sock, [b"S"], [to_w_r, from_w_w])
                raw = b""
                while len(raw) < 8:
                    chunk = self._sock.recv(8 - len(raw))
                    if not chunk:
                        raise DlcourseError("the grader's worker process stopped unexpectedly")
                    raw += chunk
                (pid,) = struct.unpack(">q", raw)
            else:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _WORKER_CMD, "direct", str(to_w_r), str(from_w_w), self.preload],
                    pass_fds=(to_w_r, from_w_w), env=_worker_env(), cwd=self._cwd, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                pid = proc.pid
                self._direct[pid] = proc
        except BaseException:
            for fd in (to_w_w, from_w_r):
                os.close(fd)
            raise
        finally:
            os.close(to_w_r)
            os.close(from_w_w)
        os.set_blocking(to_w_w, False)
        _widen_pipe(to_w_w)
        _widen_pipe(from_w_r)
        return pid, from_w_r, to_w_w

    def kill(self, pid: int) -> None:
        proc = self._direct.pop(pid, None)
        if proc is not None:
            proc.kill()
            proc.wait()
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        for pid in list(self._direct):
            self.kill(pid)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._zygote is not None:
            try:
                self._zygote.wait(timeout=0.5)  # it exits when its socket closes; don't wait for a slow teardown
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = None
        shutil.rmtree(self._cwd, ignore_errors=True)


def _widen_pipe(fd: int) -> None:
    """Linux: 1 MiB pipe buffers (from 64 kiB), so a (20000, 2) tensor crosses in one write, not many switches."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


_SHARED: list[_Spawner] = []


def _shared_spawner() -> _Spawner:
    if not _SHARED:
        _SHARED.append(_Spawner())
        atexit.register(_SHARED[0].close)
    return _SHARED[0]


class _Timeout(BaseException):
    """The worker ran past the deadline (BaseException: test code's ``except Exception`` must not swallow it)."""


class _Died(BaseException):
    """The worker process ended (os._exit, a crash, memory)."""


class _BadReply(_Died):
    """The worker's answer was not a valid message (too large, or forged by student code); the worker is killed."""


class StudentError(Exception):
    """The student's code raised; ``record`` holds type, message, where, not_implemented, blocked (strings)."""

    def __init__(self, name: str, record: dict):
        self.name = name
        self.record = record
        super().__init__(f"{name} raised {record.get('type')}: {record.get('message')}")


class _FastPickler(pickle.Pickler):
    """Pickles plain CPU tensors as raw bytes (rebuilt by `dlcourse.grading.worker.tensor_from_bytes`): several
    times faster than torch's own reduction, which matters when a test calls a student's step 1000 times."""

    def reducer_override(self, obj):
        import torch

        if type(obj) is torch.Tensor and obj.layout == torch.strided and obj.device.type == "cpu" \
                and not obj.is_conj() and not obj.is_neg() and obj.dtype in _fast_dtypes() and obj.grad_fn is None:
            from .worker import tensor_from_bytes

            x = obj.detach().contiguous()
            raw = x.reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b""
            return tensor_from_bytes, (raw, str(x.dtype).replace("torch.", ""), tuple(x.shape), obj.requires_grad)
        return NotImplemented


@functools.lru_cache(maxsize=1)
def _fast_dtypes() -> frozenset:
    import torch

    return frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
                      torch.int16, torch.int32, torch.int64, torch.bool})


def _dumps(msg: dict) -> bytes:
    buf = io.BytesIO()
    _FastPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(msg)
    return buf.getvalue()


class _Worker:
    """One live worker: request/response with deadlines; every reply goes through the safe codec."""

    def __init__(self, spawner: _Spawner, init: dict):
        self.spawner = spawner
        self.tmp = init["tmp"]
        self.pid, self.rfd, self.wfd = spawner.spawn()
        self.alive = True
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            send_frame_until(self.wfd, pickle.dumps(init), deadline)
            ready = unpack(recv_frame_until(self.rfd, deadline))
        except (ChannelTimeout, ChannelClosed, ProtocolError) as exc:
            self.kill()
            raise DlcourseError(f"the grader's worker did not get ready ({type(exc).__name__})") from None
        problems = ready.get("problems") or []
        if problems:
            self.kill()
            raise markers.MasterError("cannot block the references listed in the master: "
                                      + "; ".join(map(str, problems)))

    def request(self, msg: dict, deadline: float) -> dict:
        if not self.alive:
            raise _Died()
        try:
            payload = _dumps(msg)
        except Exception as exc:  # noqa: BLE001 - the test passed something that cannot travel
            raise DlcourseError(f"the grader cannot send the test's arguments to your notebook's process: "
                                f"{type(exc).__name__}: {exc}") from None
        try:
            send_frame_until(self.wfd, payload, deadline)
            reply = unpack(recv_frame_until(self.rfd, deadline))
        except ChannelTimeout:
            self.kill()
            raise _Timeout() from None
        except ProtocolError:
            self.kill()
            raise _BadReply() from None
        except (ChannelClosed, OSError):
            self.kill()
            raise _Died() from None
        if not isinstance(reply.get("type"), str):
            self.kill()
            raise _BadReply()
        return reply

    def kill(self) -> None:
        if self.alive:
            self.spawner.kill(self.pid)
            self.alive = False
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.rfd = self.wfd = -1

    def close(self) -> None:
        if self.alive:
            try:
                send_frame_until(self.wfd, pickle.dumps({"op": "exit"}), time.monotonic() + 1)
            except (ChannelTimeout, ChannelClosed, OSError):
                pass
        self.kill()


class StudentFunction:
    """Stands for a student's function (or any callable) in the test namespace; calling it runs it in the worker."""

    def __init__(self, session: "_Session", name: str):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        return self._session.call(self._name, args, kwargs)

    def __reduce__(self):
        from .worker import student_name

        return (student_name, (self._name,))

    def __repr__(self) -> str:
        return f"<your function {self._name}>"

    def __getattr__(self, attr: str):
        raise CheckFailed(f"the test needed {self._name}.{attr}, which the grader cannot read from your notebook")


# --------------------------------------------------------------------------------------------------------------
# one submission


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")[:60]


def _describe_error(rec: dict, name: str | None = None) -> str:
    where = f" ({rec['where']})" if rec.get("where") else ""
    what = f"{name} raised" if name else "raised"
    msg = str(rec.get("message", "")).strip()
    return f"{what} {rec.get('type', 'an error')}{': ' + msg if msg else ''}{where}"


class _Session:
    """A submission's worker plus the cells that ran, so the worker can be restarted after a kill."""

    def __init__(self, grader: "Grader", init: dict, cells: list[tuple[int, str]], result: GradeResult):
        self.grader = grader
        self.init = init
        self.cells = cells
        self.result = result
        self.ok_cells: list[tuple[int, str]] = []
        self.worker: _Worker | None = None
        self.deadline = 0.0
        self.output_bytes = 0
        self.restarts = 0

    # -- cells ----------------------------------------------------------------------------------------------

    def _start(self) -> None:
        self.worker = _Worker(self.grader.spawner, self.init)

    def run_cells(self) -> None:
        self._start()
        for index, source in self.cells:
            self._run_cell(index, source)

    def _exec_cell(self, index: int, source: str) -> tuple[str, dict]:
        """Run one cell: ("ok" | "error" | "timeout" | "died", reply). A timeout or death leaves no worker."""
        try:
            reply = self.worker.request({"op": "cell", "index": index, "source": source},
                                        time.monotonic() + self.grader.cell_time_limit)
        except _Timeout:
            return "timeout", {}
        except _Died:
            return "died", {}
        return ("ok" if reply.get("type") == "cell" and reply.get("ok") is True else "error"), reply

    def _run_cell(self, index: int, source: str) -> None:
        limit = self.grader.cell_time_limit
        label = f"cell {index + 1} ({_first_line(source)!r})"
        status, reply = self._exec_cell(index, source)
        if status == "timeout":
            self.result.cells.append(CellResult(index + 1, "timeout", f"{label} took longer than {limit:g} s and "
                                                "was stopped; the cells after it ran without it"))
            self._restart()
            return
        if status == "died":
            self.result.cells.append(CellResult(index + 1, "crashed", f"{label} ended the grading process "
                                                "(os._exit, a crash, or running out of memory); the cells after it "
                                                "ran without it"))
            self._restart()
            return
        nbytes = reply.get("output_bytes") if type(reply.get("output_bytes")) is int else 0
        output = reply.get("output") if isinstance(reply.get("output"), str) else ""
        if status == "ok":
            self.ok_cells.append((index, source))
            if nbytes > OUTPUT_NOTE_BYTES:
                self.result.cells.append(CellResult(index + 1, "ok", f"{label} printed {nbytes:,} characters "
                                                    "(only the first few thousand are kept)", nbytes, output))
            return
        err = reply.get("error") if isinstance(reply.get("error"), dict) else None
        message = f"{label} " + (_describe_error(err) if err else "failed")
        self.result.cells.append(CellResult(index + 1, "error", message, nbytes, output))

    def _restart(self) -> None:
        """A fresh worker with the cells that ran before, each under the cell time limit again; a cell that fails
        this time is dropped (and the replay starts over without it if it killed the worker)."""
        while True:
            if self.worker is not None:
                self.worker.kill()
            self.restarts += 1
            self._start()
            for cell in list(self.ok_cells):
                status, _ = self._exec_cell(*cell)
                if status != "ok":
                    self.ok_cells.remove(cell)
                if status in ("timeout", "died"):
                    break
            else:
                return

    def ensure_alive(self) -> None:
        if self.worker is None or not self.worker.alive:
            self._restart()

    # -- calls from the tests -------------------------------------------------------------------------------

    def lookup(self, name: str) -> Any:
        reply = self.worker.request({"op": "lookup", "name": name}, self.deadline)
        if reply.get("type") == "error":
            raise StudentError(name, reply.get("error") or {})
        kind = reply.get("kind")
        if kind == "missing":
            return _MISSING
        if kind == "callable":
            return StudentFunction(self, name)
        return reply.get("value")

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        msg = {"op": "call", "name": name, "args": tuple(args), "kwargs": dict(kwargs)}
        reply = self.worker.request(msg, self.deadline)
        if isinstance(reply.get("output_bytes"), int):
            self.output_bytes += reply["output_bytes"]
        if reply.get("type") == "error":
            raise StudentError(name, reply.get("error") or {})
        if reply.get("type") != "result":
            raise _Died()
        return reply.get("value")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


_MISSING = object()


def _free_names(source: str) -> list[str]:
    """Names a test reads that it never binds itself (a superset is fine: unknown ones are just not found)."""
    tree = ast.parse(source)
    loads: list[str] = []
    stores: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.append(node.id)
            else:
                stores.add(node.id)
        elif isinstance(node, ast.arg):
            stores.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
        elif isinstance(node, ast.alias):
            stores.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stores.add(node.name)
    return [n for n in dict.fromkeys(loads) if n not in stores and not hasattr(builtins, n)]


# --------------------------------------------------------------------------------------------------------------
# finding the tests


def find_assignment(name: str, hidden: bool, search: list[Path] | None = None) -> markers.Assignment:
    """The master ``solutions/<name>.py`` (or ``.ipynb``); without ``hidden``, the student version in
    ``assignments/`` will do when there is no master. Looked up in the course folder of the installed package,
    then in the current folder."""
    roots = list(dict.fromkeys(search or [REPO_ROOT, Path.cwd().resolve()]))
    for root in roots:
        for candidate in (root / "solutions" / f"{name}.py", root / "solutions" / f"{name}.ipynb"):
            if candidate.exists():
                return markers.load_assignment(candidate)
    if hidden:
        raise DlcourseError(f"no master for assignment {name!r} (looked for solutions/{name}.py in "
                            f"{', '.join(map(str, roots))}); --hidden needs the master, pass --master PATH")
    for root in roots:
        candidate = root / "assignments" / f"{name}.ipynb"
        if candidate.exists():
            return markers.load_assignment(candidate)
    raise DlcourseError(f"unknown assignment {name!r}: neither solutions/{name}.py nor assignments/{name}.ipynb "
                        f"exists in {', '.join(map(str, roots))}")


def _is_ancestor(folder: Path, path: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------------------
# the grader


class Grader:
    """Grades submissions of assignments against their masters.

    Args:
        hidden: run the hidden tests too (needs the master).
        time_limit: seconds per question (default: the master's ``time_limit``, else 20).
        cell_time_limit: seconds per submission cell (default: the master's ``cell_time_limit``, else 60).
        master: a master (or student version) to use instead of looking the assignment up by name.
        protect: extra paths the student's code may not read (e.g. the output folder, other submissions).
        memory_bytes: address space the worker may add to what it has after start-up.
    """

    def __init__(self, *, hidden: bool = False, time_limit: float | None = None,
                 cell_time_limit: float | None = None, master: str | Path | None = None,
                 protect: list[str | Path] = (), memory_bytes: int = 4 * 2**30, spawner: _Spawner | None = None):
        self.hidden = hidden
        self._time_limit = time_limit
        self._cell_time_limit = cell_time_limit
        self.master = markers.load_assignment(master) if master is not None else None
        if self.master is not None and hidden and self.master.kind != "master":
            raise DlcourseError(f"{master}: --hidden needs a master (with solutions and hidden tests), "
                                "not a student version")
        self.protect = [Path(p) for p in protect]
        self.memory_bytes = memory_bytes
        self.spawner = spawner or _shared_spawner()
        self.time_limit = 20.0
        self.cell_time_limit = 60.0
        self._setup_cache: dict[str, dict] = {}

    def _assignment(self, nb: Any, path: Path) -> markers.Assignment:
        if self.master is not None:
            return self.master
        name = (nb.get("metadata", {}).get("dlcourse", {}) or {}).get("assignment")
        if not isinstance(name, str) or not name:
            raise DlcourseError(f"{path}: the notebook does not say which assignment it is (no dlcourse.assignment "
                                "in its metadata); pass --master solutions/NAME.py")
        return find_assignment(name, self.hidden)

    def _setup_namespace(self, assignment: markers.Assignment) -> dict:
        key = str(assignment.path)
        if key not in self._setup_cache:
            ns: dict = {"__name__": "__dlcourse_grading__", "__builtins__": builtins}
            for i, src in enumerate(assignment.setup_sources):
                code = _strip_magics(src)
                exec(compile(code, f"<{assignment.name} setup {i}>", "exec"), ns)  # noqa: S102 - the master's
            self._setup_cache[key] = ns
        return self._setup_cache[key]

    def _deny_paths(self, assignment: markers.Assignment, submission: Path) -> list[str]:
        """What the worker may not read: the master and its folder, the repository's history, the submission,
        and the caller's extra paths (output folder, the folder of submissions), except folders that hold the
        package, the Python installation or the scratch space, which the worker needs."""
        paths = {assignment.path.resolve(), assignment.path.resolve().with_suffix(".ipynb"),
                 assignment.path.resolve().with_suffix(".py"), submission.resolve(), REPO_ROOT / ".git",
                 REPO_ROOT / "solutions"}
        if assignment.kind == "master":
            paths.add(assignment.path.resolve().parent)
        needed = [Path(__file__).resolve().parents[1], Path(sys.prefix).resolve(),
                  Path(tempfile.gettempdir()).resolve()]
        for extra in self.protect:
            extra = extra.resolve()
            if not any(_is_ancestor(extra, n) for n in needed):
                paths.add(extra)
        return sorted(str(p) for p in paths)

    def grade(self, submission: str | Path) -> GradeResult:
        """Grade one notebook (``.ipynb``, or a jupytext ``.py``). What goes wrong in the submission's code is
        reported in the result; an unreadable file (without ``master``) or an unknown assignment raises
        `DlcourseError`."""
        import nbformat

        start = time.monotonic()
        path = Path(submission)
        if not path.is_file():
            raise DlcourseError(f"{path}: no such submission file")
        raw = path.read_bytes()
        sha = hashlib.sha256(raw).hexdigest()
        nb, error = None, ""
        try:
            if path.suffix == ".py":  # a jupytext percent notebook (e.g. a master, to check it scores full marks)
                import jupytext

                nb = jupytext.reads(raw.decode("utf-8"), fmt="py:percent")
            else:
                nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same problem for the user
            error = f"the submission is not a readable notebook ({type(exc).__name__}: {str(exc)[:200]})"
        if nb is None and self.master is None:
            raise DlcourseError(f"{path}: {error}; pass --master FILE to record it with 0 points")
        assignment = self.master if nb is None else self._assignment(nb, path)
        result = GradeResult(submission=str(path), assignment=assignment.name, hidden=self.hidden, sha256=sha,
                             max_score=assignment.max_points)
        if self.hidden and assignment.kind != "master":
            raise DlcourseError(f"--hidden needs the master of {assignment.name}; only the student version was found")
        self.time_limit = float(self._time_limit or assignment.time_limit)
        self.cell_time_limit = float(self._cell_time_limit or assignment.cell_time_limit)
        setup = self._setup_namespace(assignment)
        cells: list[tuple[int, str]] = []
        if nb is None:
            result.notes.append(error)
        else:
            for i, cell in enumerate(nb.cells):
                if cell.get("cell_type") == "code" and not markers.is_test_cell(cell) and cell.source.strip():
                    cells.append((i, cell.source))
        tmp = tempfile.mkdtemp(prefix="dlcourse-grade-")
        init = {"tmp": tmp, "blocked": assignment.blocked, "deny": self._deny_paths(assignment, path),
                "deny_read": [], "limits": {"memory_bytes": self.memory_bytes, "file_bytes": 64 * 2**20,
                                            "cpu_seconds": 3600}}
        session = _Session(self, init, cells, result)
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the tests are small; more threads only fight the worker for the cores
        try:
            session.run_cells()
            for q in assignment.questions:
                result.questions.append(self._grade_question(session, q, setup))
        finally:
            torch.set_num_threads(threads)
            session.close()
            shutil.rmtree(tmp, ignore_errors=True)
        if session.output_bytes > OUTPUT_NOTE_BYTES:
            result.notes.append(f"your functions printed {session.output_bytes:,} characters while the tests ran "
                                "(not shown)")
        after = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "(deleted)"
        if after != sha:
            result.notes.append("the submission file changed while it was graded")
        result.score = sum(q.points for q in result.questions)
        result.seconds = round(time.monotonic() - start, 3)
        return result

    def _grade_question(self, session: _Session, q: markers.Question, setup: dict) -> QuestionResult:
        source = _strip_magics(q.source(self.hidden))
        t0 = time.monotonic()
        limit = self.time_limit

        def done(status: str, message: str = "") -> QuestionResult:
            points = q.points if status == "passed" else 0.0
            return QuestionResult(q.grade_id, points, q.points, status, message[:4000],
                                  round(time.monotonic() - t0, 3))

        try:
            session.ensure_alive()
        except DlcourseError as exc:
            return done("error", f"the grader could not restart your notebook: {exc}")
        session.deadline = time.monotonic() + limit
        ns = dict(setup)
        ns["__name__"] = f"__dlcourse_test_{q.grade_id}__"
        missing: list[str] = []
        try:
            for name in _free_names(source):
                if name in setup:
                    continue
                value = session.lookup(name)
                if value is _MISSING:
                    missing.append(name)
                else:
                    ns[name] = value
            exec(compile(source, f"<test {q.grade_id}>", "exec"), ns)  # noqa: S102 - the master's test code
        except _Timeout:
            return done("timeout", f"took longer than {limit:g} s (the time limit for this question): is there an "
                                   "infinite loop, or a loop that could be a tensor operation?")
        except _BadReply:
            return done("failed", "the grader could not read what your code sent back (larger than "
                                  f"{MAX_MESSAGE_BYTES // 2**20} MiB, or not a valid answer)")
        except _Died:
            return done("crashed", "your code ended the grading process while this question ran (os._exit, a "
                                   "crash, or running out of memory)")
        except StudentError as exc:
            rec = exc.record
            if rec.get("blocked"):
                return done("blocked", f"{exc.name}: {rec['blocked']}")
            if rec.get("not_implemented"):
                msg = str(rec.get("message") or "")
                if "not implemented yet" not in msg:
                    detail = f": {msg}" if msg else ""
                    msg = f"{exc.name} is not implemented yet (it raises NotImplementedError{detail})"
                return done("not implemented", msg)
            return done("failed", _describe_error(rec, exc.name))
        except CheckFailed as exc:
            return done("failed", str(exc))
        except NameError as exc:
            name = getattr(exc, "name", None)
            if name in missing:
                return done("failed", self._missing_message(name, session))
            return done("error", f"the test failed with NameError: {exc}")
        except AssertionError as exc:
            return done("failed", str(exc) or "a check of this question failed")
        except DlcourseError as exc:
            return done("error", str(exc))
        except Exception as exc:  # noqa: BLE001 - what the student returned broke the test code
            return done("failed", f"the test could not use what your code returned: {type(exc).__name__}: "
                                  f"{str(exc)[:500]}")
        return done("passed")

    @staticmethod
    def _missing_message(name: str, session: _Session) -> str:
        msg = f"your notebook does not define {name!r}"
        bad = [c for c in session.result.cells if c.status != "ok"]
        if bad:
            msg += f"; maybe because {bad[0].message}"
        return msg


def _strip_magics(source: str) -> str:
    """Test and setup cells run as plain Python here: drop IPython magics and shell lines."""
    return "\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!")))


# --------------------------------------------------------------------------------------------------------------
# reporting


def format_table(result: GradeResult, width: int = 100) -> str:
    """The per-question table, cell problems and the total, for a terminal."""
    rows = [(q.id, f"{q.points:g}/{q.max_points:g}", q.status, q.message) for q in result.questions]
    w_id = max([len("question")] + [len(r[0]) for r in rows])
    w_pt = max([len("points")] + [len(r[1]) for r in rows])
    w_st = max([len("result")] + [len(r[2]) for r in rows])
    out = io.StringIO()
    out.write(f"{result.assignment}: {result.submission}{' (with hidden tests)' if result.hidden else ''}\n\n")
    out.write(f"{'question':<{w_id}}  {'points':>{w_pt}}  {'result':<{w_st}}  message\n")
    out.write(f"{'-' * w_id}  {'-' * w_pt}  {'-' * w_st}  {'-' * 7}\n")
    for qid, pts, status, msg in rows:
        out.write(f"{qid:<{w_id}}  {pts:>{w_pt}}  {status:<{w_st}}  {msg}\n")
    out.write(f"{'-' * w_id}  {'-' * w_pt}\n")
    out.write(f"{'total':<{w_id}}  {f'{result.score:g}/{result.max_score:g}':>{w_pt}}\n")
    problems = [c for c in result.cells]
    if problems or result.notes:
        out.write("\nnotes:\n")
        for c in problems:
            out.write(f"  - {c.message}\n")
        for n in result.notes:
            out.write(f"  - {n}\n")
    out.write(f"\ngraded in {result.seconds:.1f} s\n")
    return out.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_result(result: GradeResult, out_dir: str | Path, stem: str | None = None) -> tuple[Path, Path]:
    """``out_dir/<stem>.json`` (everything) and ``out_dir/<stem>.csv`` (one row per question and a total)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or Path(result.submission).stem
    json_path, csv_path = out_dir / f"{stem}.json", out_dir / f"{stem}.csv"
    _atomic_write(json_path, json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", "assignment", "question", "points", "max_points", "status", "message"])
    name = Path(result.submission).name
    for q in result.questions:
        writer.writerow([name, result.assignment, q.id, f"{q.points:g}", f"{q.max_points:g}", q.status, q.message])
    writer.writerow([name, result.assignment, "total", f"{result.score:g}", f"{result.max_score:g}", "", ""])
    _atomic_write(csv_path, buf.getvalue())
    return json_path, csv_path
