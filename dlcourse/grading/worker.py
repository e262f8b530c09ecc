"""The untrusted side of grading: a process that runs a submission's cells and calls its functions.

The grader (`dlcourse.grading.grader.Grader`, the *parent*) never runs student code itself. It starts this worker, sends
it the submission's code cells one at a time, and, while the tests run in the parent, asks it to call the
student's functions with the tests' arguments. The worker answers over a dedicated pipe with values encoded by
`dlcourse.grading.protocol.pack` (no pickle), so nothing the student writes can reach the tests, the checks,
the parent's memory or the result files.

Before any student code runs, the worker hardens itself (it cannot undo this afterwards):

- the package references the assignment asks students to re-implement (``dlcourse.blocked`` in the master's
  metadata) have their code replaced by a stub raising `ReferenceBlocked`; every alias of the function is
  affected, and re-importing or re-executing their module is refused;
- an audit hook (`sys.addaudithook`; hooks cannot be removed) refuses: reading or listing the master, the
  solutions folder, the grader's output folder and the submissions being graded; writing anywhere except the
  worker's scratch folder; opening directories, making links; starting processes, sending signals, sockets,
  ctypes, garbage-collector introspection, tracing, changing resource limits, replacing a function's code, and
  re-importing the modules this list relies on. The hook keeps its state in immutable default arguments and
  uses no globals, so student code cannot reconfigure it;
- resource limits: file size, CPU time, address space; stdout and stderr (Python's and the file descriptors) go
  to a sink that counts characters and keeps only the first few thousand, so printing megabytes costs nothing;
- ``sys.exit`` in a cell is an ordinary exception; ``os._exit`` or a crash ends the worker, which the parent
  notices and restarts.

This is a hardened subprocess, not an operating-system sandbox: see course/grading.md for what it does not stop.

Two ways to start it: a *zygote* that imports torch, IPython and matplotlib once and forks a fresh worker per
submission (Linux), or one process per worker (elsewhere). Either way each submission gets a fresh process.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ReferenceBlocked", "student_name", "tensor_from_bytes", "serve", "main"]

_STATE: dict = {}

BASE_PRELOAD = [
    "numpy", "torch", "matplotlib", "matplotlib.pyplot", "IPython", "IPython.core.interactiveshell",
    "traitlets.config", "dlcourse", "dlcourse.utils", "dlcourse.data", "dlcourse.data.toy2d", "dlcourse.viz",
    "dlcourse.grading.checks", "dlcourse.grading.protocol", "ctypes", "subprocess", "_posixsubprocess", "signal",
    "socket", "json", "pickle", "linecache", "traceback", "gc", "resource", "io", "pty", "multiprocessing",
]

# Modules whose fresh re-import would undo the hardening (matched by full name or last component).
_PROTECTED_MODULES = frozenset({
    "posix", "os", "_posixsubprocess", "subprocess", "_signal", "signal", "_ctypes", "ctypes", "_socket", "socket",
    "builtins", "sys", "gc", "resource", "io", "_io", "pty", "multiprocessing", "dlcourse.grading.worker",
    "dlcourse.grading.protocol", "worker", "protocol",
})

_DENY_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.startfile", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "sys.addaudithook",
    "sys.settrace", "sys.setprofile", "resource.setrlimit", "resource.prlimit", "os.symlink", "os.link",
    "sys.remote_exec", "sys.monitoring.register_callback", "os.setuid", "os.setgid", "os.chroot",
    "webbrowser.open", "os.add_dll_directory", "winreg.OpenKey",
})
_DENY_PREFIXES = ("ctypes.", "socket.", "gc.get_", "_winapi.", "msvcrt.")

# event: (indices of path arguments, indices of dir_fd arguments)
_MUTATING_EVENTS = (
    ("os.remove", (0,), (1,)), ("os.rmdir", (0,), (1,)), ("os.rename", (0, 1), (2, 3)), ("os.mkdir", (0,), (2,)),
    ("os.chmod", (0,), (2,)), ("os.lchmod", (0,), ()), ("os.chown", (0,), (3,)), ("os.utime", (0,), (3,)),
    ("os.truncate", (0,), ()), ("os.mkfifo", (0,), (2,)), ("os.mknod", (0,), (3,)), ("os.setxattr", (0,), ()),
    ("os.removexattr", (0,), ()), ("os.chflags", (0,), ()), ("os.lchflags", (0,), ()),
    ("sqlite3.connect", (0,), ()), ("shutil.rmtree", (0,), (1,)),
)
_LISTING_EVENTS = ("os.listdir", "os.scandir", "os.chdir", "os.listxattr", "os.getxattr")


class ReferenceBlocked(Exception):
    """Raised by a package reference that the assignment asks students to implement themselves."""


def _raise_blocked(path: str):
    return ReferenceBlocked(
        f"calling dlcourse's reference {path} is not allowed while grading: this assignment asks you to implement "
        f"it yourself")


def student_name(name: str):
    """Resolve a name in the student's namespace (the parent pickles its function proxies as this call)."""
    ns = _STATE.get("ns")
    if ns is None or name not in ns:
        raise NameError(f"name {name!r} is not defined in your notebook")
    return ns[name]


def tensor_from_bytes(raw: bytes, dtype: str, shape: tuple, requires_grad: bool):
    """A tensor the parent sent as raw bytes (its fast pickling path for test arguments)."""
    import torch

    dt = getattr(torch, dtype)
    if not raw:
        t = torch.empty(shape, dtype=dt)
    else:
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dt).reshape(shape)
    return t.requires_grad_(requires_grad) if requires_grad else t


# --------------------------------------------------------------------------------------------------------------
# blocking package references


def _stub_code(path: str, nfree: int):
    """A code object that raises ReferenceBlocked(path) and has ``nfree`` free variables (so it can replace the
    code of a function with a closure, e.g. a method using ``super()``)."""
    free = [f"_free{i}" for i in range(nfree)]
    inner = ["    def blocked(*args, **kwargs):",
             "        raise __import__('dlcourse.grading.worker', fromlist=['_raise_blocked'])"
             f"._raise_blocked({path!r})"]
    if free:
        inner.append("        " + ", ".join(free) + ",")  # unreachable; makes them free variables
    src = "def outer():\n" + "".join(f"    {v} = None\n" for v in free) + "\n".join(inner) + "\n    return blocked\n"
    ns: dict = {}
    exec(compile(src, f"<blocked: {path}>", "exec"), ns)  # noqa: S102 - our own template
    return ns["outer"]().__code__


def _resolve(path: str):
    """(object, owner, attribute, module) for a dotted path 'pkg.mod.Class.method' or 'pkg.mod.function'."""
    import importlib

    parts = path.split(".")
    module = None
    for i in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        rest = parts[i:]
        break
    if module is None:
        raise LookupError(f"no module in {path!r}")
    owner, obj = None, module
    for attr in rest:
        owner, obj = obj, (vars(obj).get(attr, getattr(obj, attr)) if isinstance(obj, type) else getattr(obj, attr))
    return obj, owner, rest[-1], module


def install_blocks(paths: list[str]) -> tuple[list[str], set[str], set[str]]:
    """Disable each reference in ``paths``; returns (problems, source files of their modules, module names)."""
    problems: list[str] = []
    files: set[str] = set()
    modules: set[str] = set()
    for path in paths:
        try:
            obj, owner, attr, module = _resolve(path)
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
            elif isinstance(obj, property):
                obj = obj.fget
            if isinstance(obj, type):  # a class: block construction
                obj = obj.__dict__.get("__init__")
                if obj is None or not hasattr(obj, "__code__"):
                    raise TypeError("classes can only be blocked if they define __init__")
            code = getattr(obj, "__code__", None)
            if code is None:
                raise TypeError(f"{type(obj).__name__} is not a Python function")
            obj.__code__ = _stub_code(path, len(code.co_freevars))
            mod_file = getattr(module, "__file__", None)
            if mod_file:
                src = os.path.realpath(mod_file)
                files.add(src)
                cache_dir = os.path.join(os.path.dirname(src), "__pycache__")
                stem = os.path.splitext(os.path.basename(src))[0]
                if os.path.isdir(cache_dir):
                    files.update(os.path.join(cache_dir, f) for f in os.listdir(cache_dir) if f.startswith(stem + "."))
            modules.add(module.__name__)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails loudly
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
    return problems, files, modules


def _neutralize_process_functions() -> None:
    """Functions that start processes or signal others without raising an audit event of their own."""

    def refused(*args, **kwargs):
        raise PermissionError("not allowed while grading: starting processes or signalling other processes")

    try:
        import _posixsubprocess
        import subprocess

        _posixsubprocess.fork_exec = refused
        if hasattr(subprocess, "_fork_exec"):
            subprocess._fork_exec = refused
    except ImportError:
        pass
    import signal

    for mod in (os, sys.modules.get("posix"), signal, sys.modules.get("_signal")):
        if mod is None:
            continue
        for name in ("pidfd_open", "pidfd_send_signal"):
            if hasattr(mod, name):
                setattr(mod, name, refused)


# --------------------------------------------------------------------------------------------------------------
# the audit hook


def _build_hook(tmp: str, deny_all: tuple, deny_read: tuple, blocked_files: frozenset, protected: frozenset):
    """The audit hook. Everything it uses is bound as an immutable default argument: no globals, no closures,
    so student code can neither reconfigure it nor patch the helpers it calls."""
    W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    D = getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_PATH", 0)
    watched = frozenset({"open", "exec", "import", "object.__setattr__"} | _DENY_EVENTS
                        | {e[0] for e in _MUTATING_EVENTS} | set(_LISTING_EVENTS))

    def hook(event, args, _watched=watched, _prefixes=_DENY_PREFIXES, _deny=_DENY_EVENTS,
             _mutating=_MUTATING_EVENTS, _listing=_LISTING_EVENTS, _tmp=tmp, _deny_all=deny_all,
             _deny_read=deny_read, _blocked=blocked_files, _protected=protected, _pid=str(os.getpid()),
             _lstat=os.lstat, _readlink=os.readlink, _getcwd=os.getcwd, _fspath=os.fspath, _str=str, _bytes=bytes,
             _int=int, _isinstance=isinstance, _len=len, _list=list, _reversed=reversed, _Perm=PermissionError,
             _OSError=OSError, _getattr=getattr, _W=W, _D=D):
        if event not in _watched and not event.startswith(_prefixes):
            return
        if event in _deny or event.startswith(_prefixes):
            raise _Perm(f"not allowed while grading: {event}")
        if event == "exec":
            filename = _getattr(args[0], "co_filename", "")
            if filename in _blocked:
                raise _Perm("not allowed while grading: re-running the code of a blocked dlcourse module")
            return
        if event == "import":
            name = args[0] if _isinstance(args[0], _str) else ""
            if name in _protected or name.rpartition(".")[2] in _protected:
                raise _Perm(f"not allowed while grading: re-importing {name}")
            return
        if event == "object.__setattr__":
            if _len(args) > 1 and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
                raise _Perm(f"not allowed while grading: replacing a function's {args[1]}")
            return

        def resolve(p):
            if _isinstance(p, _bytes):
                p = p.decode("utf-8", "surrogateescape")
            elif not _isinstance(p, _str):
                p = _fspath(p)
                if _isinstance(p, _bytes):
                    p = p.decode("utf-8", "surrogateescape")
            if not p.startswith("/"):
                p = _getcwd() + "/" + p
            todo = _list(_reversed(p.split("/")))
            out = []
            hops = 0
            while todo:
                c = todo.pop()
                if c == "" or c == ".":
                    continue
                if c == "..":
                    if out:
                        out.pop()
                    continue
                cand = "/" + "/".join(out + [c])
                try:
                    st = _lstat(cand)
                except _OSError:
                    out.append(c)
                    continue
                if (st.st_mode & 0o170000) == 0o120000:
                    hops += 1
                    if hops > 40:
                        raise _Perm("not allowed while grading: too many symbolic links")
                    target = _readlink(cand)
                    if target.startswith("/"):
                        out = []
                    todo.extend(_reversed(target.split("/")))
                    continue
                out.append(c)
            return "/" + "/".join(out)

        def inside(p, root):
            return p == root or p.startswith(root if root.endswith("/") else root + "/")

        def check_read(p):
            for root in _deny_all:
                if inside(p, root):
                    raise _Perm(f"not allowed while grading: {p} belongs to the grader")
            for root in _deny_read:
                if inside(p, root):
                    raise _Perm(f"not allowed while grading: reading {p}")
            if p.startswith("/proc/"):
                first = p[6:].split("/")[0]
                if first.isdigit() and first != _pid:
                    raise _Perm("not allowed while grading: looking at other processes")

        def check_write(p):
            check_read(p)
            if not (inside(p, _tmp) or p == "/dev/null"):
                raise _Perm(f"not allowed while grading: writing to {p} (only the grader's scratch folder, "
                            f"the current directory, may be written)")

        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            if _isinstance(path, _int):
                return
            real = resolve(path)
            writing = _isinstance(flags, _int) and (flags & _W) != 0
            if _isinstance(mode, _str):
                for ch in "wax+":
                    if ch in mode:
                        writing = True
            if writing:
                check_write(real)
            else:
                check_read(real)
            if _isinstance(flags, _int) and (flags & _D) != 0:
                raise _Perm("not allowed while grading: opening a directory")
            try:
                st = _lstat(real)
            except _OSError:
                return
            if (st.st_mode & 0o170000) == 0o040000:
                raise _Perm("not allowed while grading: opening a directory")
            return
        if event in _listing:
            if _len(args) and not _isinstance(args[0], _int) and args[0] is not None:
                check_read(resolve(args[0]))
            return
        for name, path_idx, fd_idx in _mutating:
            if name != event:
                continue
            for i in fd_idx:
                if i < _len(args) and args[i] is not None and args[i] != -1:
                    raise _Perm(f"not allowed while grading: {event} relative to a directory descriptor")
            for i in path_idx:
                if i < _len(args) and args[i] is not None and not _isinstance(args[i], _int):
                    if event == "sqlite3.connect" and args[i] in (":memory:", b":memory:", ""):
                        continue
                    check_write(resolve(args[i]))
            return

    return hook


# --------------------------------------------------------------------------------------------------------------
# running cells and calls


class _Sink:
    """stdout/stderr replacement: counts characters, keeps the first ``HEAD`` of them (per cell or call)."""

    encoding = "utf-8"
    errors = "replace"

    HEAD = 4000

    def __init__(self):
        self.count = 0
        self.parts: list[str] = []
        self.kept = 0

    def reset(self) -> None:
        self.count = 0
        self.parts = []
        self.kept = 0

    def head(self) -> str:
        return "".join(self.parts)

    def write(self, s) -> int:
        if not isinstance(s, str):
            s = str(s)
        n = len(s)
        self.count += n
        if self.kept < self.HEAD:
            piece = s[: self.HEAD - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)
        return n

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def fileno(self) -> int:
        import io

        raise io.UnsupportedOperation("fileno")


def _make_shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.enabled = False
    cfg.InteractiveShell.colors = "nocolor"
    cfg.InteractiveShell.autocall = 0
    cfg.InteractiveShell.autoindent = False
    shell = InteractiveShell(config=cfg)
    return shell


def _error_record(exc: BaseException, cell_of_count: dict) -> dict:
    """Type, message and the student's line for an exception (strings only)."""
    import traceback

    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001
        message = "(the exception's message could not be shown)"
    where = ""
    try:
        frames = traceback.extract_tb(exc.__traceback__)
        for fr in reversed(frames):
            fn = fr.filename or ""
            if fn.startswith("<ipython-input-"):
                try:
                    count = int(fn.split("-")[2])
                except (IndexError, ValueError):
                    count = -1
                cell = cell_of_count.get(count)
                line = (fr.line or "").strip()
                where = (f"cell {cell + 1}, " if cell is not None else "") + f"line {fr.lineno}" + (f": {line}" if line else "")
                break
    except BaseException:  # noqa: BLE001
        pass
    blocked = None
    if isinstance(exc, ReferenceBlocked):
        blocked = message
    return {"type": type(exc).__name__, "message": message[:2000], "where": where[:500],
            "not_implemented": isinstance(exc, NotImplementedError), "blocked": blocked}


def _limit_resources(limits: dict) -> None:
    try:
        import resource
        import signal
    except ImportError:  # pragma: no cover - not POSIX
        return
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us

    def setlim(which, value):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    setlim(resource.RLIMIT_CORE, 0)
    setlim(resource.RLIMIT_FSIZE, int(limits.get("file_bytes", 64 * 2**20)))
    cpu = int(limits.get("cpu_seconds", 900))
    try:
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu += int(used.ru_utime + used.ru_stime) + 1
    except OSError:
        pass
    setlim(resource.RLIMIT_CPU, cpu)
    mem = limits.get("memory_bytes")
    if mem and hasattr(resource, "RLIMIT_AS"):
        try:
            with open("/proc/self/status") as f:
                vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        except (OSError, StopIteration, ValueError):
            vm = 0
        if vm:
            setlim(resource.RLIMIT_AS, vm + int(mem))


def _redirect_fds() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _set_pdeathsig() -> None:
    """Linux: die with our parent (the zygote), so a student's infinite loop never outlives the grader."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def serve(rfd: int, wfd: int) -> None:
    """Run one submission: receive the config, harden, then answer cell, lookup and call requests."""
    import pickle

    from .protocol import pack, recv_frame, send_frame

    def reply(**msg) -> None:
        send_frame(wfd, pack(msg))

    raw = recv_frame(rfd)
    if raw is None:
        return
    init = pickle.loads(raw)  # from the parent (trusted)
    tmp = init["tmp"]
    os.chdir(tmp)
    os.environ.update({"HOME": tmp, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp, "IPYTHONDIR": os.path.join(tmp, ".ipython")})
    import tempfile

    tempfile.tempdir = None
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    problems, blocked_files, blocked_modules = install_blocks(list(init.get("blocked", [])))
    _neutralize_process_functions()
    shell = _make_shell()
    _STATE["ns"] = shell.user_ns
    cell_of_count: dict[int, int] = {}
    _limit_resources(dict(init.get("limits", {})))
    _redirect_fds()
    sink = _Sink()
    sys.stdout = sys.stderr = sink
    sys.stdin = None
    import linecache

    linecache.clearcache()
    tmp_real = os.path.realpath(tmp)
    hook = _build_hook(tmp_real, tuple(os.path.realpath(p) for p in init.get("deny", ())),
                       tuple(os.path.realpath(p) for p in init.get("deny_read", ())), frozenset(blocked_files),
                       frozenset(_PROTECTED_MODULES | blocked_modules))
    sys.addaudithook(hook)
    del hook
    reply(type="ready", problems=problems)

    while True:
        raw = recv_frame(rfd)
        if raw is None:
            return
        try:
            msg = pickle.loads(raw)
        except BaseException as exc:  # noqa: BLE001 - e.g. student code broke pickle in this process
            reply(type="error", error={"type": "GraderError", "message": f"could not read a request: {exc!r}"[:500],
                                       "where": "", "not_implemented": False, "blocked": None})
            continue
        op = msg.get("op")
        if op == "exit":
            return
        if op == "cell":
            sink.reset()
            cell_of_count[shell.execution_count] = msg["index"]
            err = None
            try:
                result = shell.run_cell(msg["source"], store_history=True)
                exc = result.error_before_exec or result.error_in_exec
                if exc is not None:
                    err = _error_record(exc, cell_of_count)
            except BaseException as exc:  # noqa: BLE001
                err = _error_record(exc, cell_of_count)
            sys.stdout = sys.stderr = sink
            reply(type="cell", index=msg["index"], ok=err is None, error=err, output_bytes=sink.count,
                  output=sink.head())
        elif op == "lookup":
            name = msg["name"]
            ns = shell.user_ns
            if name not in ns:
                reply(type="lookup", kind="missing")
                continue
            value = ns[name]
            try:
                if callable(value) and not _is_data(value):
                    reply(type="lookup", kind="callable")
                else:
                    reply(type="lookup", kind="value", value=value)
            except BaseException as exc:  # noqa: BLE001
                reply(type="error", error=_error_record(exc, cell_of_count))
        elif op == "call":
            sink.reset()
            try:
                fn = student_name(msg["name"])
                value = fn(*msg.get("args", ()), **msg.get("kwargs", {}))
            except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt included
                sys.stdout = sys.stderr = sink
                reply(type="error", error=_error_record(exc, cell_of_count))
                continue
            sys.stdout = sys.stderr = sink
            try:
                reply(type="result", value=value, output_bytes=sink.count, output=sink.head())
            except BaseException as exc:  # noqa: BLE001
                reply(type="error", error={"type": type(exc).__name__, "message": f"the result could not be sent "
                                           f"back: {exc}"[:500], "where": "", "not_implemented": False, "blocked": None})
        else:
            reply(type="error", error={"type": "GraderError", "message": f"unknown request {op!r}", "where": "",
                                       "not_implemented": False, "blocked": None})


def _is_data(value) -> bool:
    """Values that are callable but should be sent as data (none among the safe types today)."""
    try:
        import torch

        return isinstance(value, torch.Tensor)
    except ImportError:  # pragma: no cover
        return False


# --------------------------------------------------------------------------------------------------------------
# process entry points


def _preload(modules: list[str]) -> list[str]:
    import importlib

    os.environ.setdefault("MPLBACKEND", "Agg")
    failed = []
    for name in modules:
        try:
            if name == "matplotlib.pyplot":
                import matplotlib

                matplotlib.use("Agg")
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional module only costs time later
            failed.append(f"{name}: {exc}")
    return failed


def _zygote(sock_fd: int, preload: list[str]) -> int:
    import signal
    import socket
    import struct

    sock = socket.socket(fileno=sock_fd)
    _preload(preload)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    sock.sendall(b"R")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 4)
        except OSError:
            return 0
        if not msg:
            return 0
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _set_pdeathsig()
                serve(fds[0], fds[1])
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.sendall(struct.pack(">q", pid))


def main(argv: list[str]) -> int:
    """``zygote SOCK_FD PRELOAD_JSON`` or ``direct READ_FD WRITE_FD PRELOAD_JSON``."""
    import json

    mode = argv[0]
    preload = json.loads(argv[-1])
    if mode == "zygote":
        return _zygote(int(argv[1]), preload)
    if mode == "direct":
        _preload(preload)
        serve(int(argv[1]), int(argv[2]))
        return 0
    raise SystemExit(f"unknown mode {mode!r}")
