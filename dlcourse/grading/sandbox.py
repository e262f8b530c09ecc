"""Operating-system confinement of the grader's workers with bubblewrap (``bwrap``, the sandbox Flatpak uses).

Each submission's worker processes run inside their own bwrap sandbox (see `bwrap_argv`):

- a new root file system that holds only what Python needs, read-only: the system's ``/usr`` (and the
  ``/lib``, ``/bin`` links into it), a few files of ``/etc`` (the dynamic linker's cache, the time zone), the
  Python installation, the virtual environment and the ``dlcourse`` package. No home folder, no course folder
  (so no ``solutions/``, no ``.git``), no submissions, no output folder; anything the grader must protect that
  lies inside one of those trees is covered by an empty mount;
- a private, size-capped tmpfs as ``/tmp`` (the worker's scratch, its ``HOME`` and current folder) and a small
  private ``/dev/shm``; a minimal ``/dev`` and a ``/proc`` that shows only the sandbox's own processes;
- every namespace unshared (``--unshare-all``: user, PID, network, IPC, UTS, cgroup), so no network at all and
  no view of other processes; further user namespaces disabled where bwrap supports it (0.8 and newer); all
  capabilities dropped; a new session (no terminal to inject keystrokes into);
- its own PID namespace with ``--die-with-parent``: when the grader ends the sandbox, or the grader itself
  dies, every process in it dies, including children started with ``setsid`` or double forks;
- an environment of a few variables (PATH, LANG, a scratch HOME, thread counts, the package path).

Resource limits (address space, file size, CPU time, processes, open files) are set by the worker itself
(`dlcourse.grading.worker`), and its audit hook stays on as a second layer.

`status()` probes once per process whether bwrap is installed and can create the namespaces (a container
without user namespaces, or a hardened host, may refuse); `describe()` says so in one line for
``dlcourse doctor``; `require()` raises `SandboxUnavailable` with the reason and how to install it.
``DLCOURSE_BWRAP`` names the bwrap program to use instead of the one on ``PATH``.

This module imports nothing heavy (no torch): ``dlcourse doctor`` and ``dlcourse grade --help`` use it.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import DlcourseError

__all__ = ["BWRAP_ENV", "INSTALL_HINT", "NAMESPACES_HINT", "SCRATCH", "SandboxUnavailable", "Status", "status", "describe",
           "require", "bwrap_argv", "worker_env", "matplotlib_font_cache"]

BWRAP_ENV = "DLCOURSE_BWRAP"
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install "
                "bubblewrap; Arch: sudo pacman -S bubblewrap)")
NAMESPACES_HINT = ("let bwrap create user namespaces (sysctl user.max_user_namespaces > 0, and "
                   "kernel.unprivileged_userns_clone=1 where it exists; on Ubuntu 23.10 and newer, the AppArmor "
                   "profile for bwrap), or grade on a machine or VM where it can")
SCRATCH = "/tmp"  # the worker's scratch folder inside the sandbox (a private tmpfs)
SANDBOX_UID = 65534  # "nobody" inside the sandbox's user namespace (mapped to the grader's user outside)
MIN_VERSION = (0, 5, 0)  # --size for a capped tmpfs
DISABLE_USERNS_VERSION = (0, 8, 0)
PROBE_TIMEOUT_S = 20.0

# what a worker may see of /etc: the dynamic linker's configuration, the time zone, font configuration
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives",
              "/etc/fonts")
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")


class SandboxUnavailable(DlcourseError):
    """bubblewrap is missing or cannot create its namespaces here; the message says why and what to do."""


@dataclass(frozen=True)
class Status:
    """Whether workers can be confined here: ``usable``, the bwrap program and version, and ``reason`` (why not,
    when not usable). ``disable_userns``: this bwrap can forbid further user namespaces inside the sandbox."""

    usable: bool
    path: str | None
    version: str | None
    reason: str
    disable_userns: bool = False
    installed: bool = False  # bwrap is there (usable or not): the fix is then not to install it

    @property
    def hint(self) -> str:
        """What to do about it, for one line."""
        if not self.installed:
            return INSTALL_HINT
        if "too old" in self.reason:
            return "upgrade bubblewrap (" + INSTALL_HINT + ")"
        if "cannot create namespaces" in self.reason:
            return NAMESPACES_HINT
        return "check or reinstall bubblewrap (" + INSTALL_HINT + ")"


def _bwrap_path() -> str | None:
    configured = os.environ.get(BWRAP_ENV)
    if configured is not None:
        return configured if configured and os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


def _parse_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return tuple(int(g or 0) for g in m.groups())


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]


@functools.lru_cache(maxsize=4)
def _probe(path: str | None) -> Status:
    if path is None:
        where = f"{BWRAP_ENV}={os.environ[BWRAP_ENV]!r} is not an executable file" \
            if os.environ.get(BWRAP_ENV) is not None else "bwrap (bubblewrap) is not installed"
        if not sys.platform.startswith("linux"):
            where = f"bubblewrap needs Linux namespaces, and this is {sys.platform}"
        return Status(False, None, None, where)
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return Status(False, path, None, f"{path} could not be run ({type(exc).__name__}: {exc})", installed=True)
    version_text = _first_line(out.stdout or out.stderr)
    version = _parse_version(version_text)
    if out.returncode != 0 or version is None:
        return Status(False, path, None, f"{path} --version failed: {version_text or 'no output'}", installed=True)
    shown = ".".join(map(str, version))
    if version < MIN_VERSION:
        return Status(False, path, shown, f"bubblewrap {shown} is too old (the sandbox needs "
                                          f"{'.'.join(map(str, MIN_VERSION))} or newer for a size-capped scratch)",
                      installed=True)
    disable_userns = version >= DISABLE_USERNS_VERSION
    # the same confinement flags as a real worker, around /bin/true
    argv = [path, *_confinement_flags(disable_userns), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
            "--size", str(1 << 20), "--tmpfs", "/tmp", "--", "true"]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return Status(False, path, shown, f"{path} could not start a sandbox ({type(exc).__name__}: {exc})",
                      installed=True)
    if run.returncode != 0:
        why = (_first_line(run.stderr) or f"exit status {run.returncode}").rstrip(".")
        return Status(False, path, shown, f"{path} (bubblewrap {shown}) is installed but cannot create namespaces "
                                          f"here: {why}", installed=True)
    return Status(True, path, shown, "", disable_userns, installed=True)


def status(refresh: bool = False) -> Status:
    """Probe (once per process, unless ``refresh``) whether bwrap can confine workers here."""
    if refresh:
        _probe.cache_clear()
    return _probe(_bwrap_path())


def describe() -> str:
    """One line for ``dlcourse doctor``: whether grading here is confined, and why (not)."""
    st = status()
    if st.usable:
        return (f"confined: bubblewrap {st.version} ({st.path}) runs each submission with a read-only Python, no "
                f"course folder or home, no network, a private size-capped scratch and its own process namespace")
    return (f"NOT confined: {st.reason}. A student's own check still works; `dlcourse grade --hidden` and folder "
            f"grading refuse unless given --no-sandbox; to confine them, {st.hint}")


def require() -> Status:
    """The usable bwrap, or `SandboxUnavailable` with the reason and how to install it (one line)."""
    st = status()
    if not st.usable:
        raise SandboxUnavailable(f"grading with hidden tests or a folder of submissions runs untrusted code in a "
                                 f"bubblewrap sandbox, which is not available here: {st.reason}; {st.hint}, "
                                 f"or pass --no-sandbox to grade without it (every report then says so)")
    return st


# --------------------------------------------------------------------------------------------------------------
# the sandbox's command line


def _confinement_flags(disable_userns: bool) -> list[str]:
    flags = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
             "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "dlcourse-grader"]
    if disable_userns:
        flags.append("--disable-userns")
    return flags


def _real(p: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(p))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def python_trees() -> list[str]:
    """Folders a worker's Python needs (read-only): the installation, the virtual environment and the package."""
    package_dir = _real(Path(__file__).resolve().parents[1])  # .../dlcourse
    trees = {_real(sys.base_prefix), _real(sys.prefix), _real(sys.exec_prefix),
             _real(Path(_real(sys.executable)).parent.parent), package_dir}
    # drop trees inside others (bwrap would mount them twice)
    out = []
    for t in sorted(trees, key=len):
        if not any(_inside(t, o) for o in out):
            out.append(t)
    return out


def mounted_trees() -> list[str]:
    """Host folders and files a sandbox mounts (read-only), as real paths."""
    trees = [_real(d) for d in _SYSTEM_DIRS if os.path.isdir(d)]
    trees += [_real(f) for f in _ETC_FILES if os.path.exists(f)]
    return trees + python_trees()


def needs_hiding(paths) -> list[str]:
    """Those of ``paths`` (real paths) that a sandbox would otherwise show: inside a tree it mounts."""
    trees = mounted_trees()
    return sorted({p for p in (_real(x) for x in paths) if any(_inside(p, t) for t in trees)})


def matplotlib_font_cache() -> str | None:
    """The grader user's matplotlib font list (``fontlist-v*.json``), so that a sandbox, whose home is an empty
    tmpfs, does not rebuild it at every start (a few seconds)."""
    if os.environ.get("MPLCONFIGDIR"):
        roots = [os.environ["MPLCONFIGDIR"]]
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        roots = [os.path.join(cache, "matplotlib")]
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "fontlist-v*.json")))
        if found:
            return found[-1]
    return None


def worker_env(home: str, package_root: str) -> dict[str, str]:
    """The whole environment of a worker: a search path, a UTF-8 locale, a scratch home, one thread per
    library, CPU only, a non-interactive matplotlib, and where the package is. Nothing of the grader's own
    environment (its secrets, tokens, proxies) is passed on."""
    bindir = os.path.dirname(sys.executable)
    return {
        "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
        "VECLIB_MAXIMUM_THREADS": "1",
        "DLCOURSE_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "",
        "MPLBACKEND": "Agg",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        "PYTHONPATH": package_root,
    }


def bwrap_argv(command: list[str], *, scratch_bytes: int, hide: list[str] = (), st: Status | None = None,
               shm_bytes: int = 64 * 2**20) -> list[str]:
    """The bwrap command line that runs ``command`` confined (see the module docstring).

    ``hide``: host paths the worker must not see; those inside a tree the sandbox mounts get an empty mount.
    """
    st = st or require()
    argv = [st.path, *_confinement_flags(st.disable_userns)]
    mounted: list[str] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
            mounted.append(d)
    for f in _ETC_FILES:
        if os.path.exists(f):
            argv += ["--ro-bind", f, f]
            mounted.append(_real(f))
    # the scratch tmpfs before the Python trees: a course cloned under /tmp (a venv in /tmp/course/.venv) is
    # mounted on top of the scratch, read-only, instead of being hidden by it
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(int(scratch_bytes)), "--tmpfs", SCRATCH,
             "--size", str(int(shm_bytes)), "--tmpfs", "/dev/shm"]
    for tree in python_trees():
        if not any(_inside(tree, m) for m in mounted):
            argv += ["--ro-bind", tree, tree]
            mounted.append(tree)
    argv += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]  # torch reads the CPU count
    fonts = matplotlib_font_cache()
    if fonts:
        argv += ["--ro-bind", fonts, f"{SCRATCH}/.cache/matplotlib/{os.path.basename(fonts)}"]
    for p in sorted({_real(h) for h in hide}):
        if not any(_inside(p, m) for m in mounted) or not os.path.exists(p):
            continue
        if os.path.isdir(p):
            argv += ["--size", "4096", "--tmpfs", p]
        else:
            argv += ["--ro-bind", "/dev/null", p]
    package_root = str(Path(__file__).resolve().parents[2])
    argv += ["--chdir", SCRATCH, "--clearenv"]
    for k, v in worker_env(SCRATCH, package_root).items():
        argv += ["--setenv", k, v]
    return argv + ["--", *command]
