"""The trusted side of grading: run a submission in a worker process, then its tests here, against proxies.

`Grader.grade(path)` grades one notebook:

1. the submission's bytes are read once and checked for structure before anything runs
   (`dlcourse.grading.submission`: a notebook, not a link, sane sizes, a plain assignment name); its sha256 is
   recorded before and compared after (nothing writes it);
2. its assignment is a *name* (from the notebook's metadata, from the functions a ``.py`` export defines, or
   given as ``master``), found only in the course's own ``solutions/`` (or, for a student's check,
   ``assignments/``) folder;
3. a worker process (`dlcourse.grading.worker`, hardened before any student code runs) executes the
   submission's code cells one by one, except its test cells. Where bubblewrap works, the worker runs in an
   operating-system sandbox of its own (`dlcourse.grading.sandbox`: read-only Python, no course folder, no
   network, a private scratch, a PID namespace that dies with the submission); the worker is forked from a
   *zygote* that imported torch and IPython once, one zygote per sandbox, so a restart costs well under a
   second. A cell that raises, exits or runs past the cell time limit is reported and skipped (the worker is
   killed and restarted with the cells that ran);
4. the test cells come from the master (``solutions/<name>.py``; public and, with ``hidden=True``, hidden tests)
   or, when the master is not needed (a student checking their work), from the pristine student version in
   ``assignments/``; never from the submission itself. They run *in this process*, in a namespace made of the
   master's ``grading-setup`` cell plus, for each free name the test uses that the setup does not define, the
   student's value (tensors, numbers, lists... decoded by `dlcourse.grading.protocol.unpack`) or, for a
   function, a `StudentFunction` proxy that calls it in the worker. So student code never touches the checks,
   the tests, the expected values or the result file;
5. budgets: each question and each cell has a time limit; the whole submission has a wall-clock budget
   (``budget``, counted from the moment its first worker is ready); restarts are capped (``max_restarts``) and
   a replayed cell gets about three times the time it took the first time, not a fresh full limit. What runs
   out is reported in the result, never as an exception.

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
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import DlcourseError
from . import markers, sandbox
from .protocol import (MAX_MESSAGE_BYTES, ChannelClosed, ChannelTimeout, ProtocolError, recv_frame_until,
                       send_frame_until, unpack)
from .submission import (Submission, SubmissionError, check_name, infer_assignment, normalise_source,
                         read_submission, top_level_names)

__all__ = ["REPO_ROOT", "GradeResult", "QuestionResult", "CellResult", "Grader", "StudentError", "StudentFunction",
           "find_assignment", "write_result", "format_table", "error_result", "DEFAULT_BUDGET_S"]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180.0  # a cold start imports torch; a loaded machine can take a while
SOCKET_TIMEOUT_S = 30.0
OUTPUT_NOTE_BYTES = 100_000
DEFAULT_BUDGET_S = 300.0  # wall-clock seconds for one submission, all cells, replays and questions together
DEFAULT_MAX_RESTARTS = 6
DEFAULT_SCRATCH_BYTES = 256 * 2**20
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
    """A code cell of the submission that did not run cleanly, printed a lot, or had something skipped."""

    cell: int
    status: str  # error, timeout, crashed, budget, ok
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
    sandbox: str = ""  # "bubblewrap X.Y" when confined, else "none: <why>"
    error: str = ""  # set when the submission could not be graded at all (its score is 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        for q, qd in zip(self.questions, d["questions"]):
            qd["passed"] = q.passed
        return d


# --------------------------------------------------------------------------------------------------------------
# zygotes: processes that fork workers


class _Zygote:
    """A zygote process (on the host, or inside a bwrap sandbox) and the socket it takes requests on.

    Requests are 9 bytes, an op and a signed 64-bit number: ``S`` with the worker's two pipe ends attached
    (answer: the new worker's pid as the zygote sees it) and ``K pid`` (kill that worker and every orphaned
    descendant; answer ``k``). What it answers is only ever used to address it again."""

    def __init__(self, argv_for_fd: Callable[[int], list[str]], env: dict, cwd: str, sandboxed: bool):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sandboxed = sandboxed
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(argv_for_fd(child.fileno()), pass_fds=(child.fileno(),), env=env, cwd=cwd,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err,
                                         start_new_session=not sandboxed)
        except OSError as exc:
            parent.close()
            self._err.close()
            raise DlcourseError(f"the grader's worker process could not be started: {exc}") from None
        finally:
            child.close()
        self.sock = parent
        self.ready = False
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.sock is not None and self.proc.poll() is None

    def _stderr(self) -> str:
        try:
            self._err.seek(0)
            text = self._err.read(4000).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]

    def wait_ready(self) -> None:
        if self.ready:
            return
        if self.sock is None:
            raise DlcourseError("the grader's worker process has stopped")
        self.sock.settimeout(max(1.0, START_TIMEOUT_S - (time.monotonic() - self.started)))
        try:
            ready = self.sock.recv(1)
        except OSError:
            ready = b""
        if ready != b"R":
            detail = self._stderr()
            self.close()
            where = "sandbox" if self.sandboxed else "process"
            raise DlcourseError(f"the grader's worker {where} did not start" + (f" ({detail})" if detail else
                                " (is the environment complete? try `dlcourse doctor`)"))
        self.ready = True
        self.sock.settimeout(SOCKET_TIMEOUT_S)

    def spawn(self) -> tuple[int, int, int]:
        self.wait_ready()
        to_w_r, to_w_w = os.pipe()
        from_w_r, from_w_w = os.pipe()
        try:
            socket.send_fds(self.sock, [b"S" + bytes(8)], [to_w_r, from_w_w])
            raw = b""
            while len(raw) < 8:
                chunk = self.sock.recv(8 - len(raw))
                if not chunk:
                    raise OSError("closed")
                raw += chunk
            (pid,) = struct.unpack(">q", raw)
        except OSError:
            for fd in (to_w_w, from_w_r):
                os.close(fd)
            self.close()
            raise DlcourseError("the grader's worker process stopped unexpectedly") from None
        finally:
            os.close(to_w_r)
            os.close(from_w_w)
        return pid, from_w_r, to_w_w

    def kill(self, pid: int) -> bool:
        """Kill a worker and every orphaned descendant; False if the zygote did not answer."""
        if not self.alive():
            return False
        try:
            self.sock.sendall(b"K" + struct.pack(">q", pid))
            return self.sock.recv(1) == b"k"
        except OSError:
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()  # the zygote kills its children and exits when its socket closes
            self.sock = None
        if self.proc.poll() is None:
            if self.sandboxed:
                self.proc.kill()  # the sandbox's PID namespace takes every process in it along
            else:
                try:
                    self.proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._err.close()


def _copy_font_cache(home: str) -> None:
    """Give a host zygote (whose HOME is a fresh scratch folder) the user's matplotlib font list."""
    fonts = sandbox.matplotlib_font_cache()
    if fonts:
        target = Path(home) / ".cache" / "matplotlib"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fonts, target / os.path.basename(fonts))


def _preload_arg() -> str:
    from .worker import BASE_PRELOAD

    return json.dumps(list(BASE_PRELOAD))


class _HostBox:
    """Where one submission's workers run without a sandbox: the shared host spawner, a scratch folder."""

    sandboxed = False

    def __init__(self, spawner: "_Spawner"):
        self.spawner = spawner
        self.scratch = tempfile.mkdtemp(prefix="dlcourse-grade-")

    def spawn(self) -> tuple[int, int, int]:
        return self.spawner.spawn()

    def kill(self, pid: int) -> None:
        self.spawner.kill(pid)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


class _Spawner:
    """Starts workers on the host (no sandbox): forked from one shared zygote that imported torch and IPython
    once (Linux), else one fresh interpreter each. Each worker serves exactly one submission."""

    def __init__(self, preload: list[str] | None = None):
        self.preload = json.dumps(list(preload)) if preload is not None else _preload_arg()
        self._zygote: _Zygote | None = None
        self._direct: dict[int, subprocess.Popen] = {}
        self._cwd = tempfile.mkdtemp(prefix="dlcourse-zygote-")
        _copy_font_cache(self._cwd)
        self.use_zygote = sys.platform.startswith("linux") and hasattr(socket, "send_fds")

    def _env(self) -> dict:
        return sandbox.worker_env(self._cwd, str(REPO_ROOT))

    def prestart(self, key: Any = None) -> None:
        """Start the zygote now (it imports torch while the caller does its own work)."""
        if self.use_zygote and (self._zygote is None or not self._zygote.alive()):
            self._zygote = _Zygote(lambda fd: [sys.executable, "-c", _WORKER_CMD, "zygote", str(fd), self.preload],
                                   self._env(), self._cwd, sandboxed=False)

    def box(self, key: Any = None, prefetch: bool = False) -> _HostBox:
        self.prestart()
        return _HostBox(self)

    def spawn(self) -> tuple[int, int, int]:
        """(pid, read fd, write fd) of a new worker; the fds are the parent's ends of two pipes."""
        if os.name != "posix":
            raise DlcourseError("the grader needs Linux or macOS (it passes pipes to a worker process); on Windows "
                                "run it in WSL")
        if self.use_zygote:
            self.prestart()
            return self._zygote.spawn()
        to_w_r, to_w_w = os.pipe()
        from_w_r, from_w_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CMD, "direct", str(to_w_r), str(from_w_w), self.preload],
                pass_fds=(to_w_r, from_w_w), env=self._env(), cwd=self._cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except BaseException:
            for fd in (to_w_w, from_w_r):
                os.close(fd)
            raise
        finally:
            os.close(to_w_r)
            os.close(from_w_w)
        self._direct[proc.pid] = proc
        return proc.pid, from_w_r, to_w_w

    def kill(self, pid: int) -> None:
        proc = self._direct.pop(pid, None)
        if proc is not None:
            proc.kill()
            proc.wait()
            return
        if self._zygote is not None and self._zygote.kill(pid):
            return
        try:  # the zygote did not answer: the pid is one of ours on this host
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        for pid in list(self._direct):
            self.kill(pid)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        shutil.rmtree(self._cwd, ignore_errors=True)


class _SandboxBox:
    """Where one submission's workers run: its own bwrap sandbox, with a zygote inside, killed at the end."""

    sandboxed = True
    scratch = sandbox.SCRATCH

    def __init__(self, spawner: "_SandboxSpawner", key: tuple, zygote: _Zygote, prefetch: bool):
        self.spawner = spawner
        self.key = key
        self.zygote = zygote
        self.prefetch = prefetch

    def spawn(self) -> tuple[int, int, int]:
        if not self.zygote.alive():  # e.g. the submission killed it: a fresh sandbox (same submission)
            self.zygote.close()
            self.zygote = self.spawner.start(self.key)
        first = not self.zygote.ready
        out = self.zygote.spawn()
        if first and self.prefetch:
            self.spawner.prestart(self.key)  # the next submission's sandbox warms up while this one runs
        return out

    def kill(self, pid: int) -> None:
        if not self.zygote.kill(pid):
            self.zygote.close()

    def close(self) -> None:
        self.zygote.close()


class _SandboxSpawner:
    """Starts one bwrap sandbox (with a zygote inside) per submission; keeps at most one started ahead."""

    def __init__(self):
        self.spare: tuple[tuple, _Zygote] | None = None

    def start(self, key: tuple) -> _Zygote:
        hide, scratch_bytes = key
        st = sandbox.require()
        preload = _preload_arg()

        def argv(fd: int) -> list[str]:
            return sandbox.bwrap_argv([sys.executable, "-c", _WORKER_CMD, "zygote", str(fd), preload],
                                      scratch_bytes=scratch_bytes, hide=list(hide), st=st)

        return _Zygote(argv, sandbox.worker_env(sandbox.SCRATCH, str(REPO_ROOT)), "/", sandboxed=True)

    def prestart(self, key: tuple) -> None:
        if self.spare is not None and (self.spare[0] != key or not self.spare[1].alive()):
            self.spare[1].close()
            self.spare = None
        if self.spare is None:
            self.spare = (key, self.start(key))

    def box(self, key: tuple, prefetch: bool = False) -> _SandboxBox:
        if self.spare is not None and self.spare[0] == key and self.spare[1].alive():
            zygote = self.spare[1]
        else:
            if self.spare is not None:
                self.spare[1].close()
            zygote = self.start(key)
        self.spare = None
        return _SandboxBox(self, key, zygote, prefetch)

    def close(self) -> None:
        if self.spare is not None:
            self.spare[1].close()
            self.spare = None


_SHARED: dict[str, Any] = {}


def _shared_spawner() -> _Spawner:
    if "host" not in _SHARED:
        _SHARED["host"] = _Spawner()
        atexit.register(_SHARED["host"].close)
    return _SHARED["host"]


def _shared_sandbox_spawner() -> _SandboxSpawner:
    if "sandbox" not in _SHARED:
        _SHARED["sandbox"] = _SandboxSpawner()
        atexit.register(_SHARED["sandbox"].close)
    return _SHARED["sandbox"]


def _widen_pipe(fd: int) -> None:
    """Linux: 1 MiB pipe buffers (from 64 kiB), so a (20000, 2) tensor crosses in one write, not many switches."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


class _Timeout(BaseException):
    """The worker ran past the deadline (BaseException: test code's ``except Exception`` must not swallow it)."""


class _Died(BaseException):
    """The worker process ended (os._exit, a crash, memory)."""


class _BadReply(_Died):
    """The worker's answer was not a valid message (too large, or forged by student code); the worker is killed."""


class StudentError(Exception):
    """The student's code raised; ``record`` holds type, message, where, not_implemented, blocked (strings);
    ``inputs`` describes the arguments of the call that raised."""

    def __init__(self, name: str, record: dict, inputs: str = ""):
        self.name = name
        self.record = record
        self.inputs = inputs
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

    def __init__(self, box: Any, init: dict):
        self.box = box
        self.pid, self.rfd, self.wfd = box.spawn()
        os.set_blocking(self.wfd, False)
        _widen_pipe(self.wfd)
        _widen_pipe(self.rfd)
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
            self.box.kill(self.pid)
            self.alive = False
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.rfd = self.wfd = -1

    def close(self) -> None:
        self.kill()  # kills its orphans too; nothing of the submission outlives its grading


class StudentFunction:
    """Stands for a student's function (or any callable) in the test namespace; calling it runs it in the worker."""

    def __init__(self, session: "_Session", name: str, params: list[str] | None = None):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_params", list(params or []))

    def __call__(self, *args, **kwargs):
        return self._session.call(self._name, args, kwargs, self._params)

    def __reduce__(self):
        from .worker import student_name

        return (student_name, (self._name,))

    def __repr__(self) -> str:
        return f"<your function {self._name}>"

    def __getattr__(self, attr: str):
        from .checks import CheckFailed

        raise CheckFailed(f"the test needed {self._name}.{attr}, which the grader cannot read from your notebook")


# --------------------------------------------------------------------------------------------------------------
# describing things to the student


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")[:60]


def _sha256_file(path: Path) -> str:
    """The sha256 of a file, read in chunks without following a link ("" if it cannot be read)."""
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe_error(rec: dict, name: str | None = None) -> str:
    where = f" ({rec['where']})" if rec.get("where") else ""
    what = f"{name} raised" if name else "raised"
    msg = str(rec.get("message", "")).strip()
    return f"{what} {rec.get('type', 'an error')}{': ' + msg if msg else ''}{where}"


def describe_value(v: Any) -> str:
    """A short description of a test's argument: 'a tensor of shape (2, 3) (float32)', 'the number 0.5'..."""
    try:
        import torch

        if isinstance(v, torch.Tensor):
            if v.dim() == 0:
                return f"a 0-d tensor ({str(v.dtype).replace('torch.', '')}, value {v.item():.6g})"
            return f"a tensor of shape {tuple(v.shape)} ({str(v.dtype).replace('torch.', '')})"
        if isinstance(v, torch.dtype):
            return str(v)
    except ImportError:  # pragma: no cover
        pass
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, (int, float)):
        return f"the number {v:g}" if isinstance(v, float) else f"the number {v}"
    if isinstance(v, str):
        return repr(v) if len(v) <= 40 else repr(v[:37] + "...")
    if isinstance(v, StudentFunction):
        return f"your function {object.__getattribute__(v, '_name')}"
    if isinstance(v, (list, tuple)):
        return f"a {type(v).__name__} of {len(v)} items"
    if isinstance(v, dict):
        keys = ", ".join(map(repr, list(v)[:5])) + (", ..." if len(v) > 5 else "")
        return f"a dict with keys {keys}"
    if callable(v):
        return f"a function ({getattr(v, '__name__', type(v).__name__)})"
    return f"a {type(v).__name__}"


def _describe_inputs(args: tuple, kwargs: dict, params: list[str]) -> str:
    parts = []
    for i, a in enumerate(args):
        label = params[i] if i < len(params) else f"argument {i + 1}"
        parts.append(f"{label} = {describe_value(a)}")
    parts += [f"{k} = {describe_value(v)}" for k, v in kwargs.items()]
    return ", ".join(parts) if parts else "no arguments"


def _test_line(exc: BaseException, filename: str, source: str) -> str:
    """The test's line that made the failing call (the innermost frame of the test code)."""
    try:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    except Exception:  # noqa: BLE001
        return ""
    if not frames:
        return ""
    lines = source.split("\n")
    n = frames[-1].lineno or 0
    return lines[n - 1].strip() if 0 < n <= len(lines) else ""


# --------------------------------------------------------------------------------------------------------------
# one submission


class _Session:
    """A submission's worker plus the cells that ran, so the worker can be restarted after a kill; and its
    budgets: the wall-clock end of the submission, the number of restarts left."""

    def __init__(self, grader: "Grader", box: Any, init: dict, cells: list[tuple[int, str]], result: GradeResult):
        self.grader = grader
        self.box = box
        self.init = init
        self.cells = cells
        self.result = result
        self.ok_cells: list[tuple[int, str, float]] = []  # (index, source, seconds it took)
        self.worker: _Worker | None = None
        self.deadline = 0.0
        self.end = float("inf")  # wall-clock end of the submission's budget (set when its first worker is ready)
        self.output_bytes = 0
        self.restarts = 0
        self.gave_up = ""  # why the grader stopped running this submission's code
        self.defs: dict[int, set[str]] = {}  # cell index -> names it binds at top level

    # -- budget --------------------------------------------------------------------------------------------

    def left(self) -> float:
        return self.end - time.monotonic()

    def out_of_budget(self) -> bool:
        return bool(self.gave_up) or self.left() <= 0

    def _budget_message(self) -> str:
        return self.gave_up or (f"the submission's time budget of {self.grader.budget:g} s ran out (set by the "
                                "instructor with --budget)")

    # -- cells ----------------------------------------------------------------------------------------------

    def _start(self) -> None:
        self.worker = _Worker(self.box, self.init)
        if self.end == float("inf"):
            self.end = time.monotonic() + self.grader.budget

    def run_cells(self) -> None:
        self._start()
        for n, (index, source) in enumerate(self.cells):
            if self.out_of_budget():
                rest = [i + 1 for i, _ in self.cells[n:]]
                self.result.cells.append(CellResult(index + 1, "budget", f"cells {rest[0]} to {rest[-1]} were not "
                                                    f"run: {self._budget_message()}" if len(rest) > 1 else
                                                    f"cell {rest[0]} was not run: {self._budget_message()}"))
                return
            self._run_cell(index, source)

    def _exec_cell(self, index: int, source: str, limit: float) -> tuple[str, dict, float]:
        """Run one cell: ("ok" | "error" | "timeout" | "died", reply, seconds). A timeout or death leaves no
        worker."""
        t0 = time.monotonic()
        try:
            reply = self.worker.request({"op": "cell", "index": index, "source": source},
                                        min(t0 + limit, self.end))
        except _Timeout:
            return "timeout", {}, time.monotonic() - t0
        except _Died:
            return "died", {}, time.monotonic() - t0
        status = "ok" if reply.get("type") == "cell" and reply.get("ok") is True else "error"
        return status, reply, time.monotonic() - t0

    def _run_cell(self, index: int, source: str) -> None:
        limit = self.grader.cell_time_limit
        label = f"cell {index + 1} ({_first_line(source)!r})"
        status, reply, seconds = self._exec_cell(index, source, limit)
        if status == "timeout":
            if self.left() <= 0:
                self.result.cells.append(CellResult(index + 1, "budget", f"{label} was stopped: "
                                                    f"{self._budget_message()}"))
                return
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
        notes = reply.get("notes") if isinstance(reply.get("notes"), list) else []
        for note in [n for n in notes if isinstance(n, str)][:5]:
            self.result.cells.append(CellResult(index + 1, "ok", f"cell {index + 1}: {note[:300]}"))
        if status == "ok":
            self.ok_cells.append((index, source, seconds))
            if nbytes > OUTPUT_NOTE_BYTES:
                self.result.cells.append(CellResult(index + 1, "ok", f"{label} printed {nbytes:,} characters "
                                                    "(only the first few thousand are kept)", nbytes, output))
            return
        err = reply.get("error") if isinstance(reply.get("error"), dict) else None
        message = f"{label} " + (_describe_error(err) if err else "failed")
        self.result.cells.append(CellResult(index + 1, "error", message, nbytes, output))

    def _restart(self) -> None:
        """A fresh worker with the cells that ran before, each limited to about three times what it took the first
        time; a cell that fails this time is dropped (and the replay starts over without it if it killed the
        worker). Gives up (``gave_up``) after ``max_restarts`` restarts or when the budget runs out."""
        while True:
            if self.worker is not None:
                self.worker.kill()
                self.worker = None
            if self.out_of_budget():
                return
            if self.restarts >= self.grader.max_restarts:
                self.gave_up = (f"the grader restarted your notebook {self.restarts} times (after timeouts or "
                                "crashes) and stopped there")
                return
            self.restarts += 1
            try:
                self._start()
            except DlcourseError as exc:
                self.gave_up = f"the grader could not restart your notebook: {exc}"
                return
            for cell in list(self.ok_cells):
                index, source, seconds = cell
                status, _, _ = self._exec_cell(index, source, min(self.grader.cell_time_limit, 3 * seconds + 2.0))
                if status != "ok":
                    self.ok_cells.remove(cell)
                if status in ("timeout", "died"):
                    break
            else:
                return

    def ensure_alive(self) -> None:
        if self.worker is None or not self.worker.alive:
            self._restart()
        if self.worker is None or not self.worker.alive:
            raise _GaveUp(self._budget_message())

    # -- calls from the tests -------------------------------------------------------------------------------

    def lookup(self, name: str) -> Any:
        reply = self.worker.request({"op": "lookup", "name": name}, self.deadline)
        if reply.get("type") == "error":
            raise StudentError(name, reply.get("error") or {})
        kind = reply.get("kind")
        if kind == "missing":
            return _MISSING
        if kind == "callable":
            params = reply.get("params")
            params = [str(p)[:40] for p in params[:20] if isinstance(p, str)] if isinstance(params, list) else []
            return StudentFunction(self, name, params)
        return reply.get("value")

    def call(self, name: str, args: tuple, kwargs: dict, params: list[str] = ()) -> Any:
        msg = {"op": "call", "name": name, "args": tuple(args), "kwargs": dict(kwargs)}
        reply = self.worker.request(msg, self.deadline)
        if isinstance(reply.get("output_bytes"), int):
            self.output_bytes += reply["output_bytes"]
        if reply.get("type") == "error":
            raise StudentError(name, reply.get("error") or {}, _describe_inputs(args, kwargs, list(params)))
        if reply.get("type") != "result":
            raise _Died()
        return reply.get("value")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.box.close()


class _GaveUp(Exception):
    """The submission's budget or restarts are used up: no more of its code runs."""


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


def _course_roots(search: list[Path] | None) -> list[Path]:
    """Where assignments are looked up: the course folder of the installed package, if it has one; else the
    current folder (a package installed without the course). Never a folder of submissions."""
    if search:
        return list(dict.fromkeys(Path(s).resolve() for s in search))
    if (REPO_ROOT / "solutions").is_dir() or (REPO_ROOT / "assignments").is_dir():
        return [REPO_ROOT]
    return [Path.cwd().resolve()]


def _contained(candidate: Path, folder: Path) -> bool:
    """``candidate`` is a regular file directly inside ``folder``, links resolved."""
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real.parent == folder.resolve() and real.is_file()


def find_assignment(name: str, hidden: bool, search: list[Path] | None = None,
                    prefer_student: bool = False) -> markers.Assignment:
    """The master ``solutions/<name>.py`` (or ``.ipynb``); without ``hidden``, the student version in
    ``assignments/`` will do (``prefer_student``: use it even when the master is there; its public tests are
    the master's, and reading it is faster). ``name`` must be a plain name and the file must resolve inside
    that folder: metadata never names a path."""
    check_name(name, "the notebook")
    roots = _course_roots(search)
    order = ("assignments", "solutions") if (prefer_student and not hidden) else ("solutions", "assignments")
    for folder_name in order:
        if hidden and folder_name == "assignments":
            continue
        for root in roots:
            folder = root / folder_name
            suffixes = (".ipynb",) if folder_name == "assignments" else (".py", ".ipynb")
            for suffix in suffixes:
                candidate = folder / f"{name}{suffix}"
                if candidate.exists() and _contained(candidate, folder):
                    return markers.load_assignment(candidate)
    where = ", ".join(map(str, roots))
    if hidden:
        raise DlcourseError(f"no master for assignment {name!r} (looked for solutions/{name}.py in {where}); "
                            "--hidden needs the master, pass --master PATH")
    raise DlcourseError(f"unknown assignment {name!r}: neither solutions/{name}.py nor assignments/{name}.ipynb "
                        f"exists in {where}")


def known_assignments(search: list[Path] | None = None) -> dict[str, Path]:
    """{name: file} of the assignments in the course folder (student versions, else masters)."""
    out: dict[str, Path] = {}
    for root in _course_roots(search):
        for folder, pattern in (("solutions", "*.py"), ("assignments", "*.ipynb")):
            for p in sorted((root / folder).glob(pattern)):
                if not p.name.startswith(("_", ".")) and _contained(p, root / folder):
                    out.setdefault(p.stem, p)
    return out


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
        sandbox: ``"auto"`` (default: confine workers with bubblewrap where it works, else grade unconfined
            and say so in the result), ``"required"`` (raise `dlcourse.grading.sandbox.SandboxUnavailable` if it
            does not work) or ``"off"`` (never; every result says "graded without a sandbox").
        budget: wall-clock seconds for a whole submission (cells, replays and questions).
        max_restarts: how often a submission's worker is restarted after timeouts and crashes.
        scratch_bytes: size of a sandboxed worker's private scratch folder.
        prefetch: start the next submission's sandbox while one is graded (for folders).
    """

    def __init__(self, *, hidden: bool = False, time_limit: float | None = None,
                 cell_time_limit: float | None = None, master: str | Path | None = None,
                 protect: list[str | Path] = (), memory_bytes: int = 4 * 2**30, spawner: Any = None,
                 sandbox: str | bool | None = "auto", budget: float = DEFAULT_BUDGET_S,
                 max_restarts: int = DEFAULT_MAX_RESTARTS, scratch_bytes: int = DEFAULT_SCRATCH_BYTES,
                 prefetch: bool = False):
        from . import sandbox as sb

        mode = {True: "required", False: "off", None: "auto"}.get(sandbox, sandbox)
        if mode not in ("auto", "required", "off"):
            raise ValueError(f"sandbox must be 'auto', 'required' or 'off', not {sandbox!r}")
        st = sb.require() if mode == "required" else (sb.status() if mode == "auto" else None)
        self.sandboxed = spawner is None and st is not None and st.usable
        if self.sandboxed:
            self.sandbox_label = f"bubblewrap {st.version}"
        elif mode == "off":
            self.sandbox_label = "none: --no-sandbox"
        elif spawner is not None:
            self.sandbox_label = "none: a custom spawner"
        else:
            self.sandbox_label = f"none: {st.reason}"
        self.hidden = hidden
        self._time_limit = time_limit
        self._cell_time_limit = cell_time_limit
        self.protect = [Path(p) for p in protect]
        self.memory_bytes = memory_bytes
        self.budget = float(budget)
        self.max_restarts = int(max_restarts)
        self.scratch_bytes = int(scratch_bytes)
        self.prefetch = prefetch
        self._master_dir = Path(master).resolve().parent if master is not None else None
        self.spawner = spawner or (_shared_sandbox_spawner() if self.sandboxed else _shared_spawner())
        self.spawner.prestart(self._box_key())  # the worker imports torch while we read the master
        self.master = markers.load_assignment(master) if master is not None else None
        if self.master is not None and hidden and self.master.kind != "master":
            raise DlcourseError(f"{master}: --hidden needs a master (with solutions and hidden tests), "
                                "not a student version")
        self.time_limit = 20.0
        self.cell_time_limit = 60.0
        self._setup_cache: dict[str, dict] = {}
        self._assignment_cache: dict[str, markers.Assignment] = {}

    # -- what the worker may not see ------------------------------------------------------------------------

    def _box_key(self) -> tuple:
        """What a sandbox must hide if it lies inside a tree the sandbox mounts (course-level paths only)."""
        extra = [self._master_dir] if self._master_dir is not None else []
        hide = sandbox.needs_hiding([REPO_ROOT / "solutions", REPO_ROOT / ".git", *self.protect, *extra])
        return (tuple(hide), self.scratch_bytes)

    def _deny_paths(self, assignment: markers.Assignment, submission: Path) -> list[str]:
        """What the worker's audit hook refuses to read: the master and its folder, the repository's history,
        the submission, and the caller's extra paths (output folder, the folder of submissions), except folders
        that hold the package, the Python installation or the scratch space, which the worker needs."""
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

    # -- which assignment ------------------------------------------------------------------------------------

    def _load(self, name: str) -> markers.Assignment:
        if name not in self._assignment_cache:
            self._assignment_cache[name] = find_assignment(name, self.hidden, prefer_student=not self.hidden)
        return self._assignment_cache[name]

    def assignment_for(self, sub: Submission) -> markers.Assignment:
        """The assignment a submission is graded as: ``master``, else the name in its metadata, else (a ``.py``
        export) the one whose functions it defines; `SubmissionError` if none."""
        if self.master is not None:
            return self.master
        name = sub.declared
        if name is None and sub.fmt != "ipynb":
            functions = {}
            for known in known_assignments():
                try:
                    functions[known] = self._load(known).functions
                except DlcourseError:
                    continue
            name = infer_assignment(sub, functions)
            if name is not None:
                sub.notes.append(f"the file does not say which assignment it is; graded as {name}, the assignment "
                                 "whose functions it defines")
        if name is None:
            known = ", ".join(sorted(known_assignments())) or "none found"
            raise SubmissionError("does not say which assignment it is (no dlcourse.assignment in its metadata); "
                                  f"pass --master assignments/NAME.ipynb (assignments here: {known})")
        return self._load(name)

    def _setup_namespace(self, assignment: markers.Assignment) -> dict:
        key = str(assignment.path)
        if key not in self._setup_cache:
            ns: dict = {"__name__": "__dlcourse_grading__", "__builtins__": builtins}
            for i, src in enumerate(assignment.setup_sources):
                code = _strip_magics(src)
                exec(compile(code, f"<{assignment.name} setup {i}>", "exec"), ns)  # noqa: S102 - the master's
            self._setup_cache[key] = ns
        return self._setup_cache[key]

    # -- grading ---------------------------------------------------------------------------------------------

    def grade(self, submission: str | Path) -> GradeResult:
        """Grade one notebook (``.ipynb``, or a ``.py`` export). What goes wrong in the submission's code is
        reported in the result; a file that cannot be graded (missing, a link, malformed, an unknown or
        path-like assignment name) raises `DlcourseError` (`SubmissionError`) with one line, unless ``master``
        is given, in which case an unreadable notebook is recorded with 0 points."""
        start = time.monotonic()
        path = Path(submission)
        if path.is_symlink():
            raise SubmissionError(f"{path}: is a symbolic link; hand in the notebook itself (the grader never "
                                  "follows links)")
        if not path.is_file():
            raise SubmissionError(f"{path}: no such submission file")
        try:
            sub, raw = read_submission(path)
            sha, error = hashlib.sha256(raw).hexdigest(), ""
        except SubmissionError as exc:
            if self.master is None:
                raise SubmissionError(f"{path}: {exc}") from None
            sub, sha, error = None, _sha256_file(path), str(exc)
        try:
            assignment = self.master if sub is None else self.assignment_for(sub)
        except SubmissionError as exc:
            raise SubmissionError(f"{path}: {exc}") from None
        result = GradeResult(submission=str(path), assignment=assignment.name, hidden=self.hidden, sha256=sha,
                             max_score=assignment.max_points, sandbox=self.sandbox_label)
        if self.hidden and assignment.kind != "master":
            raise DlcourseError(f"--hidden needs the master of {assignment.name}; only the student version was found")
        if not self.sandboxed:
            why = self.sandbox_label.split(": ", 1)[-1]
            result.notes.append(f"graded without a sandbox ({why}): the submission's code ran with only the "
                                "grader's Python-level hardening" + ("" if self.hidden else "; that is fine for "
                                                                     "checking your own work"))
        if sub is None:
            result.notes.append(f"the submission is not a readable notebook: {error}")
            result.error = error
            result.seconds = round(time.monotonic() - start, 3)
            return result
        result.notes.extend(sub.notes)
        self.time_limit = float(self._time_limit or assignment.time_limit)
        self.cell_time_limit = float(self._cell_time_limit or assignment.cell_time_limit)
        setup = self._setup_namespace(assignment)
        tests = {normalise_source(q.public) for q in assignment.questions} | \
            {normalise_source(q.full) for q in assignment.questions}
        cells: list[tuple[int, str]] = []
        test_position: dict[str, int] = {}
        for c in sub.cells:
            if c.kind != "code":
                continue
            if c.is_test or (sub.fmt != "ipynb" and normalise_source(c.source) in tests):
                if c.grade_id:
                    test_position.setdefault(c.grade_id, c.index)
                else:
                    for q in assignment.questions:
                        if normalise_source(c.source) in (normalise_source(q.public), normalise_source(q.full)):
                            test_position.setdefault(q.grade_id, c.index)
                continue
            if c.source.strip():
                cells.append((c.index, c.source))
        defs = {index: top_level_names(source) for index, source in cells}
        result.notes.extend(self._redefinition_notes(assignment, setup, test_position, defs))
        init = {"tmp": None, "blocked": assignment.blocked, "deny": self._deny_paths(assignment, path),
                "deny_read": [],
                "limits": {"memory_bytes": self.memory_bytes, "file_bytes": 64 * 2**20,
                           "cpu_seconds": int(self.budget) + 60, "open_files": 1024,
                           "processes": 64 if self.sandboxed else 0}}
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the tests are small; more threads only fight the worker for the cores
        box = self.spawner.box(self._box_key(), prefetch=self.prefetch) if self.sandboxed else self.spawner.box()
        init["tmp"] = box.scratch
        session = _Session(self, box, init, cells, result)
        session.defs = defs
        try:
            session.run_cells()
            for q in assignment.questions:
                result.questions.append(self._grade_question(session, q, setup))
        finally:
            torch.set_num_threads(threads)
            session.close()
        if session.output_bytes > OUTPUT_NOTE_BYTES:
            result.notes.append(f"your functions printed {session.output_bytes:,} characters while the tests ran "
                                "(not shown)")
        after = _sha256_file(path) or "(deleted)"
        if after != sha:
            result.notes.append("the submission file changed while it was graded")
        result.score = sum(q.points for q in result.questions)
        result.seconds = round(time.monotonic() - start, 3)
        return result

    @staticmethod
    def _redefinition_notes(assignment: markers.Assignment, setup: dict, test_position: dict[str, int],
                            defs: dict[int, set[str]]) -> list[str]:
        """A graded function (re)defined in a cell after its test cell: Jupyter's "Run All" would have tested the
        earlier version (or failed), the grader grades the last one; say so."""
        notes = []
        for q in assignment.questions:
            pos = test_position.get(q.grade_id)
            if pos is None:
                continue
            try:
                used = [n for n in _free_names(q.public) if n not in setup]
            except SyntaxError:
                continue
            for name in used:
                where = [i for i, names in defs.items() if name in names]
                later = [i for i in where if i > pos]
                if not later:
                    continue
                earlier = [i for i in where if i < pos]
                if earlier:
                    notes.append(f"cell {later[-1] + 1} redefines {name} after its test (cell {pos + 1}, "
                                 f"{q.grade_id}): the grader grades that last definition, not the one the test cell "
                                 "checked in your notebook")
                else:
                    notes.append(f"{name} is defined in cell {later[-1] + 1}, after its test (cell {pos + 1}, "
                                 f"{q.grade_id}): Jupyter's Run All would fail at the test; the grader grades it")
        return notes

    def _grade_question(self, session: _Session, q: markers.Question, setup: dict) -> QuestionResult:
        from .checks import CheckFailed

        source = _strip_magics(q.source(self.hidden))
        filename = f"<test {q.grade_id}>"
        t0 = time.monotonic()
        limit = self.time_limit

        def done(status: str, message: str = "") -> QuestionResult:
            points = q.points if status == "passed" else 0.0
            return QuestionResult(q.grade_id, points, q.points, status, message[:4000],
                                  round(time.monotonic() - t0, 3))

        if session.out_of_budget():
            return done("timeout", f"not graded: {session._budget_message()}")
        try:
            session.ensure_alive()
        except _GaveUp as exc:
            return done("timeout" if session.left() <= 0 else "error", f"not graded: {exc}")
        except DlcourseError as exc:
            return done("error", f"the grader could not restart your notebook: {exc}")
        session.deadline = min(time.monotonic() + limit, session.end)
        ns = dict(setup)
        ns["__name__"] = f"__dlcourse_test_{q.grade_id}__"
        missing: list[str] = []
        public_lines = {line.strip() for line in q.public.split("\n") if line.strip()}
        try:
            for name in _free_names(source):
                if name in setup:
                    continue
                value = session.lookup(name)
                if value is _MISSING:
                    missing.append(name)
                else:
                    ns[name] = value
            exec(compile(source, filename, "exec"), ns)  # noqa: S102 - the master's test code
        except _Timeout:
            if session.left() <= 0:
                return done("timeout", f"stopped: {session._budget_message()}")
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
            message = _describe_error(rec, exc.name)
            if exc.inputs:
                line = _test_line(exc, filename, source)
                call = f" as `{line}`" if line and line in public_lines else ""
                message += f". The test called {exc.name}{call} with {exc.inputs}."
            return done("failed", message)
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

    def _missing_message(self, name: str, session: _Session) -> str:
        """Blame the cell that holds the definition, if it failed (not merely the first cell that failed)."""
        msg = f"your notebook does not define {name!r}"
        defining = [i for i, names in session.defs.items() if name in names]
        problems = {c.cell - 1: c for c in session.result.cells if c.status != "ok"}
        if not defining:
            return msg + f" (no cell has `def {name}` or assigns it): was it renamed or deleted?"
        failed = [i for i in defining if i in problems]
        if failed:
            c = problems[failed[-1]]
            return msg + f": cell {c.cell}, which defines it, did not run cleanly ({c.message})"
        return msg + f": cell {defining[-1] + 1} defines it, but a later cell must have deleted or renamed it"


def _strip_magics(source: str) -> str:
    """Test and setup cells run as plain Python here: drop IPython magics and shell lines."""
    return "\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!")))


# --------------------------------------------------------------------------------------------------------------
# reporting


def error_result(submission: str | Path, message: str, assignment: str = "", max_score: float = 0.0,
                 hidden: bool = False, sandbox_label: str = "") -> GradeResult:
    """The result of a submission that could not be graded: 0 points and a one-line reason."""
    path = Path(submission)
    sha = _sha256_file(path) if path.is_file() and not path.is_symlink() else ""
    return GradeResult(submission=str(path), assignment=assignment, hidden=hidden, sha256=sha, score=0.0,
                       max_score=max_score, error=message, sandbox=sandbox_label)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7f, 0xa0)]}
_CONTROL.update({0x09: " ", 0x0a: " | ", 0x0d: " "})


def printable(text: str) -> str:
    """Text from a submission made safe for a terminal: no newlines, no escape sequences (which could clear the
    screen, move the cursor or fake a line of the table), other control characters shown as \\xNN."""
    return str(text).translate(_CONTROL)


def format_table(result: GradeResult, width: int = 100) -> str:
    """The per-question table, cell problems and the total, for a terminal (student text made printable)."""
    rows = [(q.id, f"{q.points:g}/{q.max_points:g}", q.status, printable(q.message)) for q in result.questions]
    w_id = max([len("question")] + [len(r[0]) for r in rows])
    w_pt = max([len("points")] + [len(r[1]) for r in rows])
    w_st = max([len("result")] + [len(r[2]) for r in rows])
    out = io.StringIO()
    out.write(f"{result.assignment}: {printable(result.submission)}{' (with hidden tests)' if result.hidden else ''}"
              "\n\n")
    if result.error:
        out.write(f"error: {printable(result.error)}\n")
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
            out.write(f"  - {printable(c.message)}\n")
        for n in result.notes:
            out.write(f"  - {printable(n)}\n")
    out.write(f"\ngraded in {result.seconds:.1f} s\n")
    return out.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_result(result: GradeResult, out_dir: str | Path, stem: str | None = None) -> tuple[Path, Path]:
    """``out_dir/<stem>.json`` (everything) and ``out_dir/<stem>.csv`` (one row per question and a total; one
    "error" row instead of the questions when the submission could not be graded)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or Path(result.submission).stem
    json_path, csv_path = out_dir / f"{stem}.json", out_dir / f"{stem}.csv"
    _atomic_write(json_path, json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", "assignment", "question", "points", "max_points", "status", "message"])
    name = Path(result.submission).name
    if result.error:
        writer.writerow([name, result.assignment, "error", "0", f"{result.max_score:g}", "error", result.error])
    for q in result.questions:
        writer.writerow([name, result.assignment, q.id, f"{q.points:g}", f"{q.max_points:g}", q.status, q.message])
    writer.writerow([name, result.assignment, "total", f"{result.score:g}", f"{result.max_score:g}", "", ""])
    _atomic_write(csv_path, buf.getvalue())
    return json_path, csv_path
