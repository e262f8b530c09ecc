"""``dlcourse assign``, ``dlcourse grade`` and ``dlcourse release``.

    dlcourse assign [--check]                         solutions/*.py -> assignments/*.ipynb (student versions)
    dlcourse grade SUBMISSION.ipynb [--hidden] [--json] [--timeout S] [--budget S] [--no-sandbox]
    dlcourse grade FOLDER --hidden --out DIR           one CSV and one JSON per submission in DIR
    dlcourse release DIR [--force]                     the student bundle, without solutions or hidden tests

See course/grading.md for students and instructors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..errors import DlcourseError

__all__ = ["register", "generate_assignments", "hidden_texts", "release", "RELEASE_ITEMS"]

REPO_ROOT = Path(__file__).resolve().parents[2]

# What a student bundle holds (folders copied whole, minus caches); solutions/ and tests/ never.
RELEASE_ITEMS = ["README.md", "Makefile", "pyproject.toml", "constraints.txt", "LICENSE", "course", "lectures",
                 "assignments", "dlcourse"]
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", ".*.tmp", "*.egg-info")
RELEASE_MARKER = ".dlcourse-release"


# --------------------------------------------------------------------------------------------------------------
# assign


def _masters(solutions: Path) -> list[Path]:
    return sorted(p for p in solutions.glob("*.py") if not p.name.startswith(("_", ".")))


def generate_assignments(solutions: Path = REPO_ROOT / "solutions", out: Path = REPO_ROOT / "assignments",
                         write: bool = True) -> list[tuple[Path, str]]:
    """Student versions of every master in ``solutions``: [(path, "updated" | "unchanged" | "out of date" |
    "stale")]. ``write=False`` only compares (a file without a master is "stale"; it is never deleted)."""
    from .markers import dumps, load_assignment, student_version

    masters = _masters(solutions)
    if not masters:
        raise DlcourseError(f"no masters (*.py) in {solutions}")
    report: list[tuple[Path, str]] = []
    expected: set[str] = set()
    for master in masters:
        assignment = load_assignment(master)
        if assignment.kind != "master":
            raise DlcourseError(f"{master}: has no solution or hidden-test markers; is it a master?")
        text = dumps(student_version(assignment))
        target = out / f"{assignment.name}.ipynb"
        expected.add(target.name)
        same = target.exists() and target.read_text(encoding="utf-8") == text
        if same:
            report.append((target, "unchanged"))
        elif not write:
            report.append((target, "out of date" if target.exists() else "missing"))
        else:
            out.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
            report.append((target, "updated"))
    if out.is_dir():
        for extra in sorted(out.glob("*.ipynb")):
            if extra.name not in expected:
                report.append((extra, "stale"))
    return report


def cmd_assign(args: argparse.Namespace) -> int:
    report = generate_assignments(Path(args.solutions), Path(args.out), write=not args.check)
    bad = 0
    for path, status in report:
        if status in ("out of date", "missing", "stale"):
            bad += 1
        suffix = " (no master in solutions/; delete it by hand)" if status == "stale" else ""
        print(f"{path}: {status}{suffix}")
    if args.check and bad:
        print("error: assignments/ is out of date; run `dlcourse assign` (or `make assignments`)", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------------------------
# grade


def _folder_master(subs: list[Path], hidden: bool) -> tuple[str | None, dict[Path, str]]:
    """The one assignment a folder's notebooks name, and the notebooks that cannot be read (with why). Notebooks
    naming different assignments make the run refuse: one of them could be graded against an easier one."""
    from .submission import SubmissionError, read_submission

    names: dict[str, list[str]] = {}
    unreadable: dict[Path, str] = {}
    for sub in subs:
        try:
            parsed, _ = read_submission(sub)
        except SubmissionError as exc:
            unreadable[sub] = str(exc)
            continue
        if parsed.declared is not None:
            names.setdefault(parsed.declared, []).append(sub.name)
    if len(names) > 1:
        counts = "; ".join(f"{n}: {len(v)} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                           for n, v in sorted(names.items(), key=lambda kv: -len(kv[1])))
        raise DlcourseError(f"the notebooks in this folder name different assignments ({counts}); grade one "
                            "assignment per folder, or pass --master solutions/NAME.py to grade them all against "
                            "that one")
    return (next(iter(names)) if names else None), unreadable


def cmd_grade(args: argparse.Namespace) -> int:
    from . import sandbox as sb

    target = Path(args.submission)
    if target.is_symlink():
        raise DlcourseError(f"{target}: is a symbolic link; grade the file or folder itself")
    if not target.exists():
        raise DlcourseError(f"{target}: no such file or folder")
    folder = target.is_dir()
    mode = "off" if args.no_sandbox else ("required" if (args.hidden or folder) else "auto")
    if mode == "required":
        sb.require()  # before anything is read: one line saying how to install bubblewrap, or --no-sandbox
    out = Path(args.out) if args.out else None
    if folder:
        subs = sorted(p for p in target.iterdir() if p.suffix == ".ipynb" and not p.name.startswith("."))
        if not subs:
            raise DlcourseError(f"{target}: no submissions (*.ipynb) in this folder")
        if out is None:
            out = target.resolve().parent / f"{target.resolve().name}-grades"
        protect = [target, out]
    else:
        subs = [target]
        protect = [out] if out is not None else []
    from .grader import Grader, error_result, find_assignment, format_table, printable, write_result

    master = args.master
    unreadable: dict[Path, str] = {}
    if folder and master is None:
        name, unreadable = _folder_master(subs, args.hidden)
        if name is None:
            raise DlcourseError(f"{target}: no notebook here says which assignment it is; pass --master "
                                "solutions/NAME.py (or assignments/NAME.ipynb)")
        master = find_assignment(name, args.hidden).path
    grader = Grader(hidden=args.hidden, time_limit=args.timeout, cell_time_limit=args.cell_timeout, master=master,
                    protect=protect, sandbox=mode, budget=args.budget, prefetch=folder)
    results = []
    failed = 0
    for sub in subs:
        if folder:
            if sub.is_symlink():
                result = error_result(sub, "is a symbolic link; the grader never follows links",
                                      grader.master.name, grader.master.max_points, args.hidden, grader.sandbox_label)
            elif sub in unreadable:
                result = error_result(sub, unreadable[sub], grader.master.name, grader.master.max_points,
                                      args.hidden, grader.sandbox_label)
            else:
                try:
                    result = grader.grade(sub)
                except Exception as exc:  # noqa: BLE001 - one bad submission must not stop the others
                    msg = str(exc) if isinstance(exc, DlcourseError) else f"the grader failed on it: " \
                                                                         f"{type(exc).__name__}: {exc}"
                    msg = msg.split(f"{sub}: ", 1)[-1]
                    result = error_result(sub, msg[:500], grader.master.name, grader.master.max_points,
                                          args.hidden, grader.sandbox_label)
            if result.error:
                failed += 1
                print(f"{printable(str(sub))}: error: {printable(result.error)}", file=sys.stderr)
        else:
            result = grader.grade(sub)
        results.append(result)
        if out is not None:
            write_result(result, out)
        if not args.json and not folder:
            print(format_table(result), end="")
    if args.json:
        data = [r.to_dict() for r in results]
        print(json.dumps(data[0] if not folder else data, indent=1, sort_keys=True))
    elif folder:
        names = [printable(Path(r.submission).name) for r in results]
        width = max(len(n) for n in names)
        print(f"{'submission':<{width}}  score")
        for name, r in zip(names, results):
            shown = f"error: {printable(r.error)}" if r.error else f"{r.score:g}/{r.max_score:g}"
            print(f"{name:<{width}}  {shown}")
        if not grader.sandboxed:
            print(f"graded without a sandbox ({grader.sandbox_label.split(': ', 1)[-1]})")
    if out is not None and not args.json:
        print(f"results written to {out}" + (f" ({failed} could not be graded: see their rows)" if failed else ""))
    return 0


# --------------------------------------------------------------------------------------------------------------
# release


def hidden_texts(solutions: Path = REPO_ROOT / "solutions") -> list[str]:
    """Lines of hidden tests (stripped, not blank) that appear in no master's public part: none of them may occur
    in a student bundle. (A line such as a seeded generator can be hidden in one assignment and public in another;
    it is no secret then. Nor is an import: a lecture may well import the same function.)"""
    from .markers import hidden_regions, load_assignment, strip_hidden

    assignments = [load_assignment(master) for master in _masters(solutions)]
    public: set[str] = set()
    for a in assignments:
        for cell in a.nb.cells:
            src = strip_hidden(cell.source) if cell.cell_type == "code" else cell.source
            public.update(line.strip() for line in src.splitlines())
    lines: list[str] = []
    for a in assignments:
        for cell in a.nb.cells:
            if cell.cell_type != "code":
                continue
            for region in hidden_regions(cell.source):
                for line in region.splitlines():
                    s = line.strip()
                    if not s.startswith(("#", "import ", "from ")) and s not in public and len(s) >= 30:
                        lines.append(s)
    return list(dict.fromkeys(lines))


def release(dest: Path, force: bool = False, root: Path = REPO_ROOT) -> list[Path]:
    """Write the student bundle into ``dest``; returns the top-level paths written."""
    dest = Path(dest).resolve()
    root = root.resolve()
    if dest == root or root.is_relative_to(dest) or dest.is_relative_to(root / "dlcourse"):
        raise DlcourseError(f"{dest}: the bundle cannot be written over the course itself; choose another folder")
    if dest.exists() and not dest.is_dir():
        raise DlcourseError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise DlcourseError(f"{dest} exists and is not empty; refusing to overwrite it (pass --force)")
    solutions = root / "solutions"
    leaks = hidden_texts(solutions) if solutions.is_dir() and _masters(solutions) else []
    if (solutions.is_dir() and _masters(solutions)):
        stale = [p for p, s in generate_assignments(solutions, root / "assignments", write=False) if s != "unchanged"]
        if stale:
            raise DlcourseError("assignments/ is out of date (" + ", ".join(p.name for p in stale)
                                + "); run `dlcourse assign` first")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for item in RELEASE_ITEMS:
        src = root / item
        if not src.exists():
            continue
        target = dest / item
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if src.is_dir():
            shutil.copytree(src, target, ignore=_IGNORED)
        else:
            shutil.copy2(src, target)
        written.append(target)
    (dest / RELEASE_MARKER).write_text("student bundle written by `dlcourse release`\n", encoding="utf-8")
    # the bundle must not hold a master or any hidden-test line
    for path in sorted(dest.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix in (".py", ".ipynb") and path.parent.name == "solutions":
            raise DlcourseError(f"{path}: a solutions file got into the bundle")
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for line in leaks:
            if line in text:
                raise DlcourseError(f"{path}: contains hidden-test text ({line[:60]!r}); the bundle is not safe to "
                                    "hand out")
    return written


def cmd_release(args: argparse.Namespace) -> int:
    written = release(Path(args.dir), force=args.force)
    print(f"student bundle written to {Path(args.dir).resolve()}: " + ", ".join(p.name for p in written))
    return 0


# --------------------------------------------------------------------------------------------------------------


def register(sub) -> None:
    """Add ``assign``, ``grade`` and ``release`` to the ``dlcourse`` command."""
    p = sub.add_parser("assign", help="regenerate assignments/ (student versions) from the masters in solutions/")
    p.add_argument("--solutions", default=str(REPO_ROOT / "solutions"), help="folder of masters (default: %(default)s)")
    p.add_argument("--out", default=str(REPO_ROOT / "assignments"), help="output folder (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if assignments/ is out of date")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("grade", help="grade a submission (public tests; --hidden adds the master's hidden tests)",
                       description="Grade a notebook (or a .py export of one), or a folder of notebooks of one "
                                   "assignment. Run it with the course's environment: .venv/bin/dlcourse grade "
                                   "assignments/a0_sampling.ipynb (see course/grading.md). --hidden and folders run "
                                   "each submission in a bubblewrap sandbox.")
    p.add_argument("submission", help="a notebook, or a folder of notebooks (one per student)")
    p.add_argument("--hidden", action="store_true", help="also run the hidden tests (needs the master)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds per question (default: the assignment's, usually 20)")
    p.add_argument("--cell-timeout", type=float, default=None, metavar="S",
                   help="seconds per notebook cell (default: the assignment's, usually 60)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write NAME.csv and NAME.json per submission here (default for a folder: FOLDER-grades "
                        "next to it; for one file: nothing written)")
    p.add_argument("--master", default=None, metavar="FILE",
                   help="the assignment to grade against: solutions/NAME.py (instructors) or assignments/NAME.ipynb "
                        "(public tests only); default: NAME from the notebook's metadata")
    p.add_argument("--budget", type=float, default=300.0, metavar="S",
                   help="wall-clock seconds for one whole submission: cells, restarts and questions "
                        "(default: %(default)g)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without the bubblewrap sandbox (where it is missing); every report then says so")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("release", help="write the student bundle (no solutions, no hidden tests) into DIR")
    p.add_argument("dir", help="output folder (must be empty unless --force)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder, replacing the bundle's files")
    p.set_defaults(func=cmd_release)
