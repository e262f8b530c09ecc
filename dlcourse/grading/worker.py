"""The untrusted side of grading: a process that runs a submission's cells and calls its functions.

The grader (`dlcourse.grading.grader.Grader`, the *parent*) never runs student code itself. It starts this worker, sends
it the submission's code cells one at a time, and, while the tests run in the parent, asks it to call the
student's functions with the tests' arguments. The worker answers over a dedicated pipe with values encoded by
`dlcourse.grading.protocol.pack` (no pickle), so nothing the student writes can reach the tests, the checks,
the parent's memory or the result files.

Where bubblewrap is available the worker runs inside an operating-system sandbox (`dlcourse.grading.sandbox`):
a read-only Python, no course folder, no network, a private size-capped scratch, its own process namespace.
Inside it, and on its own where there is no sandbox, the worker hardens itself before any student code runs
(it cannot undo this afterwards):

- the package references the assignment asks students to re-implement (``dlcourse.blocked`` in the master's
  metadata) have their code replaced by a stub raising `ReferenceBlocked`; every alias of the function is
  affected, and re-importing or re-executing their module is refused;
- an audit hook (`sys.addaudithook`; hooks cannot be removed from Python) refuses: reading, listing or
  ``stat``-ing the master, the solutions folder, the grader's output folder and the submissions being graded;
  writing anywhere except the worker's scratch folder; opening directories, making links; starting processes,
  sending signals, sockets, ctypes, garbage-collector introspection, tracing, changing resource limits,
  replacing the code or defaults of the package's functions, changing the classes the hook relies on
  (``pathlib``), and re-importing the modules this list relies on. Paths are turned into a plain ``str`` with
  ``str.__str__`` / ``bytes.decode`` before they are checked, never with the object's own methods, so a
  ``str`` subclass cannot show the check one path and ``open`` another; other path objects are accepted only
  as unmodified ``pathlib`` paths. The hook keeps its state in immutable default arguments and uses no
  globals, so student code cannot reconfigure it;
- file APIs implemented in native code that raise no audit event of their own (``torch.from_file``,
  ``torch.save``/``torch.load`` on a file name, ``safetensors``, POSIX shared memory) are wrapped so that they
  raise the ``open`` event first; ``os.stat`` and friends raise one too. This is a second layer: the same
  functions stay reachable through other names, and a native exploit (for example NumPy's
  ``__array_interface__`` over interpreter memory) can switch the hook off; only the sandbox stops those;
- resource limits: file size, CPU time, address space, open files and (in the sandbox) processes; stdout and
  stderr (Python's and the file descriptors) go to a sink that counts characters and keeps only the first few
  thousand, so printing megabytes costs nothing;
- ``sys.exit`` in a cell is an ordinary exception; ``os._exit`` or a crash ends the worker, which the parent
  notices and restarts.

IPython behaves as in Jupyter where it matters for grading: ``%matplotlib inline`` (or any backend) keeps the
non-interactive backend and does nothing else, ``%timeit`` runs its statement once, ``%%time``, ``%load_ext``,
``%config``, ``%env`` work as usual, and shell escapes (``!cmd``, ``%pip``, ``%%bash``...) are not run: the cell's
other lines run, and the report says what was skipped.

Two ways to start it: a *zygote* that imports torch, IPython and matplotlib once, builds the IPython shell and
forks a fresh worker per request (Linux; inside the sandbox, one zygote per submission), or one process per
worker (elsewhere). Either way each submission gets fresh processes.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ReferenceBlocked", "student_name", "tensor_from_bytes", "serve", "main", "MAX_NOTES"]

_STATE: dict = {}

BASE_PRELOAD = [
    "numpy", "torch", "matplotlib", "matplotlib.pyplot", "IPython", "IPython.core.interactiveshell",
    "traitlets.config", "dlcourse", "dlcourse.utils", "dlcourse.data", "dlcourse.data.toy2d",
    "dlcourse.grading.checks", "dlcourse.grading.protocol", "ctypes", "subprocess", "_posixsubprocess", "signal",
    "socket", "json", "pickle", "linecache", "traceback", "gc", "resource", "io", "pty", "multiprocessing",
    "pathlib", "inspect", "safetensors", "safetensors.torch",
]

# Modules whose fresh re-import would undo the hardening (matched by full name or last component).
_PROTECTED_MODULES = frozenset({
    "posix", "os", "_posixsubprocess", "subprocess", "_signal", "signal", "_ctypes", "ctypes", "_socket", "socket",
    "builtins", "sys", "gc", "resource", "io", "_io", "pty", "multiprocessing", "dlcourse.grading.worker",
    "dlcourse.grading.protocol", "worker", "protocol", "pathlib", "_safetensors_rust", "_posixshmem",
})

# Classes the hook's path checks rely on: changing their attributes is refused.
_FROZEN_CLASS_MODULES = frozenset({"pathlib", "dlcourse.grading.worker", "dlcourse.grading.protocol"})

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
# events that read a path (the first argument); "dlcourse.stat" is raised by the wrapped os.stat & co.
_LISTING_EVENTS = ("os.listdir", "os.scandir", "os.chdir", "os.listxattr", "os.getxattr", "dlcourse.stat")

MAX_NOTES = 20  # notes per cell (skipped shell commands...)


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


def _rebind(original, replacement, prefixes: tuple[str, ...]) -> None:
    """Replace ``original`` by ``replacement`` wherever a loaded module under ``prefixes`` binds it by name."""
    for name, mod in list(sys.modules.items()):
        if mod is None or not name.startswith(prefixes):
            continue
        try:
            for attr, value in list(vars(mod).items()):
                if value is original:
                    setattr(mod, attr, replacement)
        except Exception:  # noqa: BLE001 - a module without a normal namespace
            continue


def _wrap_native_file_apis() -> None:
    """Make native file APIs that raise no audit event raise ``open`` (so the hook checks their path) first.

    A second layer only: some stay reachable under other names (``torch._C._VariableFunctions.from_file``,
    ``torch._C.StorageBase.from_file``), which the sandbox, not this, keeps away from the grader's files.
    """
    audit = sys.audit
    writing = os.O_WRONLY | os.O_CREAT

    def is_path(p) -> bool:
        return isinstance(p, (str, bytes, os.PathLike))

    def checked(fn, path_index: int, keyword: str | None, mode_of):
        def wrapper(*args, **kwargs):
            path = kwargs.get(keyword) if keyword and keyword in kwargs else (
                args[path_index] if len(args) > path_index else None)
            if is_path(path):
                mode = mode_of(args, kwargs)
                audit("open", path, mode, writing if ("w" in mode or "+" in mode) else os.O_RDONLY)
            return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapped")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper

    def shared_mode(args, kwargs):
        shared = kwargs.get("shared", args[1] if len(args) > 1 else False)
        return "r+" if shared else "r"

    torch = sys.modules.get("torch")
    if torch is not None:
        original = torch.from_file
        wrapped = checked(original, 0, "filename", shared_mode)
        _rebind(original, wrapped, ("torch",))
        for cls in (getattr(torch, "UntypedStorage", None), getattr(torch, "TypedStorage", None)):
            desc = next((vars(k)["from_file"] for k in getattr(cls, "__mro__", ()) if "from_file" in vars(k)), None)
            if desc is None:
                continue

            def storage_from_file(klass, *args, _desc=desc, **kwargs):
                return _desc.__get__(None, klass)(*args, **kwargs)

            inner = checked(lambda *a, _f=storage_from_file, **k: _f(*a, **k), 1, "filename",
                            lambda a, k: shared_mode(a[1:], k))
            try:
                setattr(cls, "from_file", classmethod(inner))
            except (AttributeError, TypeError):
                pass
        c = getattr(torch, "_C", None)
        for name, mode in (("PyTorchFileWriter", "w"), ("PyTorchFileReader", "r")):
            cls = getattr(c, name, None)
            if cls is not None:
                setattr(c, name, checked(cls, 0, None, lambda a, k, m=mode: m))
    rust = sys.modules.get("safetensors._safetensors_rust")
    if rust is not None:
        for name, index, keyword, mode in (("serialize_file", 1, "filename", "w"), ("safe_open", 0, "filename", "r")):
            original = getattr(rust, name, None)
            if original is not None:
                _rebind(original, checked(original, index, keyword, lambda a, k, m=mode: m), ("safetensors",))
    try:
        import _posixshmem

        def no_shm(*args, **kwargs):
            raise PermissionError("not allowed while grading: POSIX shared memory (shm_open)")

        _rebind(_posixshmem.shm_open, no_shm, ("_posixshmem", "multiprocessing"))
    except ImportError:
        pass


def _wrap_stat_functions() -> None:
    """``os.stat`` and the functions built on it (``os.path.exists``, ``pathlib.Path.stat``...) raise no audit
    event: make them raise "dlcourse.stat" so the hook refuses them on the grader's files. (``posix.stat``,
    which the import system uses, is left alone: the sandbox hides those files from it.)"""
    audit = sys.audit

    def wrap(fn):
        def wrapper(path, *args, **kwargs):
            if not isinstance(path, int):
                audit("dlcourse.stat", path)
            return fn(path, *args, **kwargs)

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    for name in ("stat", "lstat", "access", "readlink", "statvfs", "pathconf"):
        fn = getattr(os, name, None)
        if fn is not None:
            setattr(os, name, wrap(fn))


# --------------------------------------------------------------------------------------------------------------
# the audit hook


def _build_hook(tmp: str, deny_all: tuple, deny_read: tuple, blocked_files: frozenset, protected: frozenset,
                package_dir: str):
    """The audit hook. Everything it uses is bound as an immutable default argument: no globals, no closures,
    so student code can neither reconfigure it nor patch the helpers it calls."""
    import pathlib
    import types

    W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    D = getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_PATH", 0)
    watched = frozenset({"open", "exec", "import", "object.__setattr__", "object.__delattr__"} | _DENY_EVENTS
                        | {e[0] for e in _MUTATING_EVENTS} | set(_LISTING_EVENTS))
    path_types = tuple(t for t in (pathlib.PurePosixPath, pathlib.PosixPath, pathlib.PureWindowsPath,
                                   pathlib.WindowsPath) if isinstance(t, type))

    def hook(event, args, _watched=watched, _prefixes=_DENY_PREFIXES, _deny=_DENY_EVENTS,
             _mutating=_MUTATING_EVENTS, _listing=_LISTING_EVENTS, _tmp=tmp, _deny_all=deny_all,
             _deny_read=deny_read, _blocked=blocked_files, _protected=protected, _pid=str(os.getpid()),
             _lstat=os.lstat, _readlink=os.readlink, _getcwd=os.getcwd, _str=str, _bytes=bytes, _type=type,
             _str_str=str.__str__, _bytes_decode=bytes.decode, _pp_str=pathlib.PurePath.__str__,
             _pp_fspath=pathlib.PurePath.__fspath__, _path_types=path_types, _func=types.FunctionType,
             _frozen_modules=_FROZEN_CLASS_MODULES, _package=package_dir.rstrip("/") + "/",
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
            name = args[0] if _type(args[0]) is _str else ""
            if name in _protected or name.rpartition(".")[2] in _protected:
                raise _Perm(f"not allowed while grading: re-importing {name}")
            return
        if event in ("object.__setattr__", "object.__delattr__"):
            obj = args[0]
            name = args[1] if _len(args) > 1 and _type(args[1]) is _str else ""
            if _type(obj) is _func and name in ("__code__", "__defaults__", "__kwdefaults__"):
                # the package's own functions (blocked references among them) keep their code and defaults;
                # a student's functions (or namedtuple's) may change theirs
                code_file = obj.__code__.co_filename
                if code_file.startswith(_package) or code_file.startswith("<blocked:"):
                    raise _Perm(f"not allowed while grading: replacing {name} of a dlcourse function")
                return
            if _isinstance(obj, _type) and _getattr(obj, "__module__", "") in _frozen_modules:
                raise _Perm("not allowed while grading: changing the classes of pathlib or of the grader")
            return

        def plain(p):
            # The path as an exact str, from the object's data, never from its own methods (a str subclass can
            # override startswith or __str__; open() uses the underlying characters).
            t = _type(p)
            if t is _str:
                return p
            if t is _bytes:
                return _bytes_decode(p, "utf-8", "surrogateescape")
            if _isinstance(p, _str):
                return _str_str(p)
            if _isinstance(p, _bytes):
                return _bytes_decode(p, "utf-8", "surrogateescape")
            if t in _path_types and t.__str__ is _pp_str and t.__fspath__ is _pp_fspath:
                return plain(_pp_str(p))
            raise _Perm(f"not allowed while grading: a path given as a {t.__name__} object (pass a str)")

        def resolve(p):
            p = plain(p)
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
                except ValueError:  # an embedded NUL: the call itself will fail
                    raise _Perm("not allowed while grading: a path with a NUL character") from None
                if (st.st_mode & 0o170000) == 0o120000:
                    hops += 1
                    if hops > 40:
                        raise _Perm("not allowed while grading: too many symbolic links")
                    target = plain(_readlink(cand))
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
            if _type(path) is _int:
                return
            real = resolve(path)
            writing = _type(flags) is _int and (flags & _W) != 0
            if _type(mode) is _str:
                for ch in "wax+":
                    if ch in mode:
                        writing = True
            if writing:
                check_write(real)
            else:
                check_read(real)
            if _type(flags) is _int and (flags & _D) != 0:
                raise _Perm("not allowed while grading: opening a directory")
            try:
                st = _lstat(real)
            except _OSError:
                return
            if (st.st_mode & 0o170000) == 0o040000:
                raise _Perm("not allowed while grading: opening a directory")
            return
        if event in _listing:
            if _len(args) and _type(args[0]) is not _int and args[0] is not None:
                check_read(resolve(args[0]))
            return
        for name, path_idx, fd_idx in _mutating:
            if name != event:
                continue
            for i in fd_idx:
                if i < _len(args) and args[i] is not None and args[i] != -1:
                    raise _Perm(f"not allowed while grading: {event} relative to a directory descriptor")
            for i in path_idx:
                if i < _len(args) and args[i] is not None and _type(args[i]) is not _int:
                    if event == "sqlite3.connect" and _type(args[i]) in (_str, _bytes) \
                            and args[i] in (":memory:", b":memory:", ""):
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


def _note(text: str) -> None:
    notes = _STATE.setdefault("notes", [])
    if len(notes) < MAX_NOTES:
        notes.append(text[:300])


def _short(cmd: str) -> str:
    cmd = " ".join(str(cmd).split())
    return cmd if len(cmd) <= 60 else cmd[:57] + "..."


def _make_shell():
    """An IPython shell that runs cells as Jupyter does, minus what grading must not do (see the docstring)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.text import SList
    from traitlets.config import Config

    class GradingShell(InteractiveShell):
        def enable_gui(self, gui=None):
            return None  # no event loop: figures are never shown while grading

        def enable_matplotlib(self, gui=None):
            import matplotlib

            return gui, matplotlib.get_backend()  # keep the non-interactive backend (Agg)

        def system(self, cmd):
            _note(f"the shell command `!{_short(cmd)}` was not run (the grader runs no shell commands)")
            return 0

        system_raw = system_piped = system

        def getoutput(self, cmd, split=True, depth=0):
            self.system(cmd)
            return SList() if split else ""

    cfg = Config()
    cfg.HistoryManager.enabled = False
    cfg.InteractiveShell.colors = "nocolor"
    cfg.InteractiveShell.autocall = 0
    cfg.InteractiveShell.autoindent = False
    shell = GradingShell(config=cfg)

    def skipped(kind):
        def magic(line="", cell=None):
            what = f"%{kind} {line}".strip() if cell is None else f"%%{kind} {line}".strip()
            _note(f"`{_short(what)}` was not run (the grader installs nothing and runs no shell commands)")

        return magic

    for name in ("pip", "conda", "mamba", "micromamba", "sx", "system", "bash", "sh", "script", "perl", "ruby",
                 "pypy", "python2", "python3"):
        shell.register_magic_function(skipped(name), "line_cell" if name not in ("sx", "system") else "line", name)
    for name in ("autosave", "clear", "qtconsole", "connect_info"):  # Jupyter-kernel magics: nothing to do here
        shell.register_magic_function(lambda line="": None, "line", name)
    original_timeit = shell.find_magic("timeit", "line")
    original_cell_timeit = shell.find_cell_magic("timeit")
    execution = shell.magics_manager.registry.get("ExecutionMagics")

    def timeit_once(line="", cell=None):
        # one run instead of many: the timing is irrelevant for grading, the side effects are as in Jupyter
        opts, stmt = execution.parse_options(line, "n:r:tcp:qo", posix=False, strict=False, preserve_non_opts=True)
        flags = "-n1 -r1 -q"
        if cell is None:
            return original_timeit(f"{flags} {stmt}")
        return original_cell_timeit(f"{flags} {stmt}", cell)

    if execution is not None and original_timeit is not None and original_cell_timeit is not None:
        shell.register_magic_function(timeit_once, "line_cell", "timeit")
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
    if limits.get("open_files") and hasattr(resource, "RLIMIT_NOFILE"):
        setlim(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    if limits.get("processes") and hasattr(resource, "RLIMIT_NPROC"):
        # counted per user and user namespace: in the sandbox, its own processes (not enforced for root)
        setlim(resource.RLIMIT_NPROC, int(limits["processes"]))
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


def _prctl(option: int, value: int) -> bool:
    """Linux prctl(2) through ctypes (before the hook forbids ctypes); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:  # noqa: BLE001
        return False


PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36


def _call_params(fn) -> list[str]:
    """Parameter names of a student's callable, to name the inputs of a failing call (strings only)."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    out = []
    for p in params[:20]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            break
        out.append(str(p.name)[:40])
    return out


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
    _prepare()
    shell = _STATE.pop("shell")
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
    package_dir = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    hook = _build_hook(tmp_real, tuple(os.path.realpath(p) for p in init.get("deny", ())),
                       tuple(os.path.realpath(p) for p in init.get("deny_read", ())), frozenset(blocked_files),
                       frozenset(_PROTECTED_MODULES | blocked_modules), package_dir)
    _wrap_stat_functions()
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
            _STATE["notes"] = []
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
            notes = [str(n) for n in _STATE.get("notes", [])][:MAX_NOTES]
            reply(type="cell", index=msg["index"], ok=err is None, error=err, output_bytes=sink.count,
                  output=sink.head(), notes=notes)
        elif op == "lookup":
            name = msg["name"]
            ns = shell.user_ns
            if name not in ns:
                reply(type="lookup", kind="missing")
                continue
            value = ns[name]
            try:
                if callable(value) and not _is_data(value):
                    reply(type="lookup", kind="callable", params=_call_params(value))
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


def _children() -> set[int]:
    """Our child processes (workers, and with the subreaper flag, their orphaned descendants)."""
    kids: set[int] = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.update(int(p) for p in f.read().split())
        return kids
    except (OSError, ValueError):
        pass
    me = os.getpid()
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == me:
                        kids.add(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
    except OSError:
        pass
    return kids


def _kill_children(keep: set[int]) -> None:
    import signal

    for pid in _children() - keep:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _recv_request(sock) -> tuple[bytes, list[int]]:
    """One 9-byte request (an op byte and a signed 64-bit argument) with the file descriptors it carries."""
    import socket

    msg, fds, _, _ = socket.recv_fds(sock, 9, 4)
    while msg and len(msg) < 9:
        more = sock.recv(9 - len(msg))
        if not more:
            break
        msg += more
    return msg, fds


def _prepare() -> None:
    """What every worker needs and a zygote can do once before forking: the wrapped file APIs, the shell."""
    if _STATE.get("prepared"):
        return
    _wrap_native_file_apis()
    _STATE["shell"] = _make_shell()
    _STATE["prepared"] = True


def _zygote(sock_fd: int, preload: list[str]) -> int:
    """Fork a worker for each "S" request (its pipes arrive with it), kill one (and every orphaned descendant)
    for each "K"; end, killing every child, when the grader closes the socket."""
    import signal
    import socket
    import struct

    sock = socket.socket(fileno=sock_fd)
    _preload(preload)
    try:
        _prepare()  # once; each worker gets a fresh copy with fork
    except Exception:  # noqa: BLE001 - each worker tries again (and reports what fails)
        _STATE.clear()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a worker (setsid, double fork) become our children
    _prctl(PR_SET_DUMPABLE, 0)  # workers (forked: inherited) cannot ptrace us or each other
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    sock.sendall(b"R")
    workers: set[int] = set()
    try:
        while True:
            try:
                msg, fds = _recv_request(sock)
            except OSError:
                return 0
            if len(msg) < 9:
                return 0
            op, (arg,) = msg[:1], struct.unpack(">q", msg[1:9])
            if op == b"K":
                for fd in fds:
                    os.close(fd)
                workers.discard(arg)
                _kill_children(keep=workers)
                if arg > 0:
                    try:
                        os.kill(arg, signal.SIGKILL)
                    except OSError:
                        pass
                sock.sendall(b"k")
                continue
            if op != b"S" or len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:  # the worker
                code = 0
                try:
                    sock.close()
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _prctl(PR_SET_CHILD_SUBREAPER, 0)
                    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))  # die with the zygote
                    serve(fds[0], fds[1])
                except BaseException:  # noqa: BLE001
                    code = 1
                finally:
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            workers.add(pid)
            sock.sendall(struct.pack(">q", pid))
    finally:
        _kill_children(keep=set())


def main(argv: list[str]) -> int:
    """``zygote SOCK_FD PRELOAD_JSON`` or ``direct READ_FD WRITE_FD PRELOAD_JSON``."""
    import json

    mode = argv[0]
    preload = json.loads(argv[-1])
    if mode == "zygote":
        return _zygote(int(argv[1]), preload)
    if mode == "direct":
        import signal

        _preload(preload)
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        serve(int(argv[1]), int(argv[2]))
        return 0
    raise SystemExit(f"unknown mode {mode!r}")
