"""Tensor-aware checks for assignment tests, with messages written for a student.

Every check returns quietly when it passes and raises `CheckFailed` (an ``AssertionError``) with one paragraph
that says *what* is wrong: the shape or dtype that differs, where the first NaN is, the largest difference and its
index, and, when the numbers betray a common mistake, a hint (a flipped sign, a factor of 2, a missing constant,
a transposed matrix, an off-by-one index)::

    got = sample_components(w, u)
    check_dtype(got, torch.int64, name="sample_components(w, u)")
    check_close(got, expected, name="sample_components(w, u)")

``name`` is how the message refers to the value; use the call that produced it. ``mistakes`` maps a description
of a known bug to the values that bug would give; when the student's values match one, the message names it (all
of them, if several match: choose test data that tells them apart; `lint_mistakes` checks that it does).

Statistical checks (`check_mean_close`, `check_cov_close`, `check_frequencies`) state their tolerance in standard
errors of a correct sampler, computed from the reference distribution (never from the samples they check), and,
in the message, the chance that a correct sampler fails them.

The same checks run in a student's notebook (public tests, "check my work" in Jupyter) and in the grader, where
they run in the grader's own process on the values the student's functions returned (see `dlcourse.grading`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "CheckFailed",
    "check_true",
    "check_tensor",
    "check_shape",
    "check_dtype",
    "check_finite",
    "check_in_range",
    "check_close",
    "check_equal",
    "check_mean_close",
    "check_cov_close",
    "check_frequencies",
]
# (also `lint_mistakes` and `MistakesNotSeparated`, for authors of masters; not star-exported)


class CheckFailed(AssertionError):
    """A check did not pass; ``str(exc)`` is the message for the student."""


# --------------------------------------------------------------------------------------------------------------
# formatting helpers


def _fmt(v: float) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.6g}"


def _index(flat: int, shape: Sequence[int]) -> str:
    """'17' for a 1-D tensor, '(4, 1)' for more dimensions, '' for a scalar."""
    if len(shape) == 0:
        return ""
    idx = []
    for size in reversed(shape):
        idx.append(flat % size)
        flat //= size
    idx = idx[::-1]
    return str(idx[0]) if len(idx) == 1 else "(" + ", ".join(map(str, idx)) + ")"


def _at(flat: int, shape: Sequence[int]) -> str:
    i = _index(flat, shape)
    return f" at index {i}" if i else ""


def _describe(x: Any) -> str:
    """'a tensor of shape (3, 2) and dtype torch.float32', 'a list of 3 items', 'None'..."""
    if x is None:
        return "None"
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    mod = type(x).__module__
    if mod == "numpy" or type(x).__name__ == "ndarray":
        return f"a NumPy array of shape {getattr(x, 'shape', '?')}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)} items"
    if isinstance(x, (bool, int, float)):
        return f"the number {x!r}"
    described = getattr(x, "describe", None)  # values the grader could not bring back (see grader.StudentObject)
    if callable(described) and getattr(x, "_dlcourse_student_object", False):
        return described()
    return f"a {type(x).__name__} object"


def _shape_str(shape: Sequence[Any]) -> str:
    parts = ["*" if s is None or s == -1 else str(int(s)) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


# --------------------------------------------------------------------------------------------------------------
# basic checks


def check_true(condition: Any, message: str) -> None:
    """Fail with ``message`` unless ``condition`` is true (for test-specific conditions)."""
    if not bool(condition):
        raise CheckFailed(message)


def check_tensor(got: Any, name: str = "your result") -> torch.Tensor:
    """``got`` must be a ``torch.Tensor``; returns it."""
    if isinstance(got, torch.Tensor):
        return got
    msg = f"{name} returned {_describe(got)}, but a torch.Tensor was expected."
    if got is None:
        msg += " Did you forget a `return` statement?"
    elif type(got).__name__ == "ndarray":
        msg += " Keep the computation in torch (torch.from_numpy converts an array if you need to)."
    elif isinstance(got, (list, tuple)):
        msg += " Build the result with torch operations (or torch.stack / torch.tensor) instead of a Python list."
    raise CheckFailed(msg)


def check_shape(got: Any, shape: Sequence[int | None], name: str = "your result") -> None:
    """``got`` is a tensor of shape ``shape``; ``None`` or ``-1`` in ``shape`` matches any size."""
    got = check_tensor(got, name)
    want = tuple(shape)
    have = tuple(got.shape)
    if len(have) == len(want) and all(w is None or w == -1 or w == h for h, w in zip(have, want)):
        return
    msg = f"{name} returned shape {_shape_str(have)} but shape {_shape_str(want)} was expected."
    concrete = all(w is not None and w != -1 for w in want)
    if concrete and len(have) == len(want) == 2 and have == want[::-1]:
        msg += " The two dimensions are swapped: is a matrix transposed?"
    elif concrete and len(have) == len(want) + 1 and have[:-1] == want and have[-1] == 1:
        msg += " There is an extra trailing dimension of size 1: squeeze it (e.g. .squeeze(-1))."
    elif concrete and len(have) == len(want) + 1 and have[:-1] == want:
        msg += " There is an extra last dimension: did you forget to sum or reduce over it?"
    elif concrete and len(have) + 1 == len(want) and want[:-1] == have:
        msg += " The last dimension is missing: was it summed away, or lost by indexing?"
    elif concrete and math.prod(have) == math.prod(want):
        msg += " It has the right number of elements, so a reshape, view or transpose is off."
    raise CheckFailed(msg)


_DTYPE_FAMILIES = {
    "floating": lambda d: d.is_floating_point,
    "integer": lambda d: not d.is_floating_point and not d.is_complex and d != torch.bool,
    "bool": lambda d: d == torch.bool,
}


def check_dtype(got: Any, dtype: torch.dtype | str | Sequence[torch.dtype], name: str = "your result") -> None:
    """``got.dtype`` is ``dtype``, one of a sequence of dtypes, or in a family: "floating", "integer", "bool"."""
    got = check_tensor(got, name)
    if isinstance(dtype, str):
        ok = _DTYPE_FAMILIES[dtype](got.dtype)
        wanted = f"a {dtype} dtype"
    else:
        options = tuple(dtype) if isinstance(dtype, (list, tuple)) else (dtype,)
        ok = got.dtype in options
        wanted = " or ".join(str(d) for d in options)
    if ok:
        return
    msg = f"{name} has dtype {got.dtype}, but {wanted} was expected."
    if got.dtype.is_floating_point and (dtype == "integer" or dtype in (torch.int64, torch.long, torch.int32)):
        msg += " Indices must be integers: convert with .long(), or use an operation that returns indices."
    elif not got.dtype.is_floating_point and (dtype == "floating" or getattr(dtype, "is_floating_point", False)):
        msg += " Integer arithmetic has crept in: start from float tensors (e.g. the inputs' dtype)."
    elif got.dtype.is_floating_point and getattr(dtype, "is_floating_point", False):
        msg += " Keep the inputs' dtype: new tensors should use dtype=x.dtype (or *_like) rather than the default."
    raise CheckFailed(msg)


def _nonfinite_report(t: torch.Tensor) -> str | None:
    """'3 of 200 values are NaN (first at index 17); 1 is -inf (at index 4)', or None if all are finite."""
    if not (t.is_floating_point() or t.is_complex()):
        return None
    parts = []
    total = t.numel()
    flat = t.reshape(-1)
    for label, mask in (("NaN", torch.isnan(flat)), ("+inf", torch.isposinf(flat)), ("-inf", torch.isneginf(flat))):
        count = int(mask.sum())
        if count:
            first = int(mask.nonzero()[0, 0])
            verb = "is" if count == 1 else "are"
            loc = _index(first, tuple(t.shape))
            where = f" (first at index {loc})" if loc and count > 1 else (f" (at index {loc})" if loc else "")
            parts.append(f"{count} {verb} {label}{where}")
    if not parts:
        return None
    head = parts[0]
    return f"{head.split(' ', 1)[0]} of {total} values {head.split(' ', 1)[1]}" + "".join("; " + p for p in parts[1:])


def check_finite(got: Any, name: str = "your result", hint: str | None = None) -> None:
    """No NaN or infinite values in ``got``; ``hint`` is added to the message when the check fails."""
    got = check_tensor(got, name)
    report = _nonfinite_report(got)
    if report is None:
        return
    msg = f"{name} contains values that are not finite: {report}."
    if hint:
        msg += " " + hint
    raise CheckFailed(msg)


def check_in_range(got: Any, low: float | None = None, high: float | None = None, name: str = "your result",
                   hint: str | None = None) -> None:
    """Every value of ``got`` satisfies ``low <= value <= high`` (either bound may be None)."""
    got = check_tensor(got, name)
    if got.numel() == 0:
        return
    flat = got.reshape(-1)
    bad = torch.zeros_like(flat, dtype=torch.bool)
    if low is not None:
        bad |= flat < low
    if high is not None:
        bad |= flat > high
    if got.is_floating_point():
        bad |= torch.isnan(flat)
    count = int(bad.sum())
    if count == 0:
        return
    first = int(bad.nonzero()[0, 0])
    bounds = f"[{_fmt(low) if low is not None else '-inf'}, {_fmt(high) if high is not None else 'inf'}]"
    msg = (f"{name} has {count} of {got.numel()} values outside {bounds}: the first is {_fmt(flat[first].item())}"
           f"{_at(first, tuple(got.shape))}.")
    if hint:
        msg += " " + hint
    raise CheckFailed(msg)


# --------------------------------------------------------------------------------------------------------------
# closeness


_KNOWN_CONSTANTS = [
    ("log(2π)", math.log(2 * math.pi)),
    ("½·log(2π)", 0.5 * math.log(2 * math.pi)),
    ("log 2", math.log(2.0)),
    ("π", math.pi),
    ("1", 1.0),
]


def _as_expected(expected: Any, like: torch.Tensor | None) -> torch.Tensor:
    if isinstance(expected, torch.Tensor):
        return expected.detach()
    t = torch.as_tensor(expected)
    if like is not None and t.is_floating_point() and like.is_floating_point():
        t = t.to(like.dtype)
    return t


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    if a.shape != b.shape:
        return False
    a64, b64 = a.double(), b.double()
    return bool(torch.isclose(a64, b64, rtol=rtol, atol=atol, equal_nan=True).all())


def _hints(got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> list[str]:
    """Recognisable relations between wrong values and the expected ones."""
    hints: list[str] = []
    g, e = got.double(), expected.double()
    finite = torch.isfinite(g) & torch.isfinite(e)
    if not bool(finite.any()):
        return hints
    scale = float(e[finite].abs().max())
    if scale > atol and _close(g, -e, rtol, atol):
        return ["Your values have the opposite sign of the expected ones: check the sign in your formula."]
    for factor, words in ((2.0, "twice"), (0.5, "half"), (-2.0, "minus twice"), (-0.5, "minus half")):
        if scale > atol and _close(g, factor * e, rtol, atol):
            return [f"Your values are {words} the expected ones (a factor of {abs(factor):g}"
                    f"{' and a sign' if factor < 0 else ''}): look for a missing or extra 2 or ½."]
    if g.dim() == 2 and g.shape[0] == g.shape[1] and _close(g.transpose(0, 1), e, rtol, atol):
        return ["Your matrix is the transpose of the expected one."]
    if g.dim() >= 1 and g.numel() > 1:
        diff = (g - e)[finite]
        if diff.numel() > 1:
            c = float(diff.median())
            if abs(c) > atol and bool(((diff - c).abs() <= atol + rtol * e[finite].abs()).all()):
                name = next((n for n, v in _KNOWN_CONSTANTS if abs(abs(c) - v) < 1e-3 * max(1.0, v)), None)
                known = f", which is {'-' if c < 0 else ''}{name}" if name else ""
                return [f"Your values differ from the expected ones by the same constant everywhere "
                        f"(got - expected = {c:.6g}{known}): a constant term, such as a normalising constant, "
                        f"is missing or extra."]
        ratio = g[finite & (e.abs() > atol)] / e[finite & (e.abs() > atol)]
        if ratio.numel() > 1:
            r = float(ratio.median())
            if abs(r - 1) > 1e-3 and bool(((ratio - r).abs() <= 1e-3 * abs(r) + rtol).all()):
                return [f"Your values are the expected ones times a constant factor {r:.6g}: a scale is off."]
    if not g.is_floating_point() or not e.is_floating_point():
        pass
    return hints


def check_close(got: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-6, name: str = "your result",
                mistakes: Mapping[str, Any] | None = None, hint: str | None = None) -> None:
    """``got`` equals ``expected`` up to |got - expected| <= atol + rtol * |expected|, elementwise.

    Checks in order: a tensor was returned, the shape, non-finite values where the expected ones are finite,
    then the values. Integer or boolean ``expected`` values are compared exactly (and must not be matched by
    floats). ``mistakes`` maps a description ("you used L^T z instead of L z") to the values that mistake gives;
    ``hint`` is appended when the values differ.
    """
    if mistakes and _LINT["on"]:
        _lint_mistakes(expected, mistakes, name, rtol, atol)
    if not isinstance(got, torch.Tensor) and isinstance(got, (int, float)) and not isinstance(expected, torch.Tensor):
        got = torch.tensor(got)
    got = check_tensor(got, name)
    exp = _as_expected(expected, got)
    check_shape(got, tuple(exp.shape), name)
    exact = not (exp.is_floating_point() or exp.is_complex())
    if exact and got.is_floating_point():
        raise CheckFailed(f"{name} has dtype {got.dtype}, but integer values ({exp.dtype}) were expected. "
                          "Indices must be integers: convert with .long(), or use an operation that returns indices.")
    if got.numel() == 0:
        return
    if exact:
        rtol, atol = 0.0, 0.0
    g = got.detach().cpu()
    e = exp.detach().cpu()

    # non-finite values where finite ones were expected
    e_finite = torch.isfinite(e.double()) if not exact else torch.ones_like(e, dtype=torch.bool)
    g_nonfinite = ~torch.isfinite(g.double()) if not exact else torch.zeros_like(g, dtype=torch.bool)
    if bool((g_nonfinite & e_finite).any()):
        report = _nonfinite_report(torch.where(e_finite, g.double(), torch.zeros((), dtype=torch.float64)))
        msg = f"{name} contains values that are not finite where finite values were expected: {report}."
        if hint:
            msg += " " + hint
        raise CheckFailed(msg)

    g64, e64 = g.double(), e.double()
    ok = torch.isclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True)
    if bool(ok.all()):
        return
    bad = ~ok
    nbad = int(bad.sum())
    n = g.numel()
    shape = tuple(g.shape)
    if exact:
        flat_bad = bad.reshape(-1).nonzero()[:, 0]
        first = int(flat_bad[0])
        gv, ev = g.reshape(-1)[first].item(), e.reshape(-1)[first].item()
        msg = (f"{name} is wrong at {nbad} of {n} positions; the first is{_at(first, shape)}: "
               f"got {_fmt(gv)}, expected {_fmt(ev)}.")
        diffs = (g64 - e64).reshape(-1)[flat_bad]
        if bool((diffs == 1).all()) or bool((diffs == -1).all()):
            msg += f" Every wrong value is off by {'+1' if float(diffs[0]) > 0 else '-1'}: an off-by-one error?"
    else:
        diff = (g64 - e64).abs()
        diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
        worst = int(torch.where(bad, diff, torch.full_like(diff, -1.0)).reshape(-1).argmax())
        gv, ev = g64.reshape(-1)[worst].item(), e64.reshape(-1)[worst].item()
        head = "is not close to the expected values" if n > 1 else "is not close to the expected value"
        count = f"{nbad} of {n} values are off. " if n > 1 else ""
        msg = (f"{name} {head}: {count}The largest difference is {_fmt(abs(gv - ev))}{_at(worst, shape)}: "
               f"got {_fmt(gv)}, expected {_fmt(ev)} (tolerance: atol={atol:g}, rtol={rtol:g}).")
    matched = [label for label, alt in (mistakes or {}).items() if _matches(g, alt, got, rtol, atol)]
    if len(matched) == 1:
        msg += f" It looks like {matched[0]}."
    elif matched:
        msg += (" It looks like one of these (they give the same values here): "
                + "; or ".join(matched) + ".")
    elif not exact:
        msg += "".join(" " + h for h in _hints(g, e, rtol, atol))
    if hint:
        msg += " " + hint
    raise CheckFailed(msg)


def _matches(g: torch.Tensor, alt: Any, like: torch.Tensor, rtol: float, atol: float) -> bool:
    alt_t = _as_expected(alt, like)
    return alt_t.shape == g.shape and _close(g, alt_t.detach().cpu(), max(rtol, 1e-6), max(atol, 1e-6))


# Authoring aid: with lint_mistakes(True), every check_close given `mistakes` first checks that the test data tells
# each listed mistake apart from the expected values and from every other listed mistake (a test that cannot would
# diagnose one mistake as another). tests/test_grading.py turns it on while grading every master.
_LINT = {"on": False}


class lint_mistakes:
    """``with lint_mistakes():`` (or ``lint_mistakes(True)`` / ``lint_mistakes(False)``) turns the check of
    listed mistakes on; it raises `MistakesNotSeparated` when two of them, or one and the expected values,
    coincide on the test's data."""

    def __init__(self, on: bool = True):
        self._previous = _LINT["on"]
        _LINT["on"] = bool(on)

    def __enter__(self) -> "lint_mistakes":
        return self

    def __exit__(self, *exc) -> None:
        _LINT["on"] = self._previous


class MistakesNotSeparated(AssertionError):
    """A test lists mistakes its data cannot tell apart (a problem of the master, not of the student's code)."""


def _lint_mistakes(expected: Any, mistakes: Mapping[str, Any], name: str, rtol: float, atol: float) -> None:
    exp = _as_expected(expected, None).detach().cpu()
    exact = not (exp.is_floating_point() or exp.is_complex())
    tol_r, tol_a = (0.0, 0.0) if exact else (max(rtol, 1e-6), max(atol, 1e-6))
    items = [(label, _as_expected(alt, exp if exp.is_floating_point() else None).detach().cpu())
             for label, alt in mistakes.items()]
    for i, (label, alt) in enumerate(items):
        if alt.shape == exp.shape and _close(alt, exp, tol_r, tol_a):
            raise MistakesNotSeparated(f"in the test of {name}, the mistake {label!r} gives the expected values: the "
                                       "test data cannot detect it")
        for other, alt2 in items[i + 1:]:
            if alt.shape == alt2.shape and _close(alt, alt2, tol_r, tol_a):
                raise MistakesNotSeparated(f"in the test of {name}, the mistakes {label!r} and {other!r} give the "
                                           "same values: the test data cannot tell them apart")


def check_equal(got: Any, expected: Any, *, name: str = "your result", mistakes: Mapping[str, Any] | None = None,
                hint: str | None = None) -> None:
    """Exact equality (shape, and every value); see `check_close`."""
    check_close(got, expected, rtol=0.0, atol=0.0, name=name, mistakes=mistakes, hint=hint)


# --------------------------------------------------------------------------------------------------------------
# statistical checks


def _two_sided_tail(n_se: float) -> float:
    """P(|Z| > n_se) for a standard normal Z."""
    return math.erfc(n_se / math.sqrt(2.0))


def _samples_2d(samples: Any, name: str) -> torch.Tensor:
    s = check_tensor(samples, name)
    if s.dim() == 1:
        s = s.unsqueeze(-1)
    if s.dim() != 2:
        raise CheckFailed(f"{name} should be a batch of samples of shape (n,) or (n, d), got shape {tuple(s.shape)}.")
    if s.shape[0] < 2:
        raise CheckFailed(f"{name} has {s.shape[0]} samples; a statistical check needs many.")
    check_finite(s, name)
    return s.detach().double().cpu()


def _vec(values: torch.Tensor) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values.reshape(-1).tolist()) + ")"


def check_mean_close(samples: Any, mean: Any, *, cov: Any = None, std: Any = None, n_se: float = 4.0,
                     name: str = "your samples", hint: str | None = None) -> None:
    """The sample mean of ``samples`` (n, d) is within ``n_se`` standard errors of ``mean`` (d,), per coordinate.

    The standard error is sqrt(cov_ii / n) with ``cov`` (d, d) the reference distribution's covariance (or ``std``
    (d,) its standard deviations): the tolerance comes from the reference, never from the samples under test (a
    single huge outlier would widen its own error bars). A correct sampler fails with probability about
    d * P(|Z| > n_se) (6e-5 per coordinate for 4).
    """
    s = _samples_2d(samples, name)
    n, d = s.shape
    mu = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    if mu.numel() != d:
        raise CheckFailed(f"{name} has samples of dimension {d}, but the mean has {mu.numel()} coordinates.")
    if cov is not None:
        sd = torch.as_tensor(cov, dtype=torch.float64).reshape(d, d).diagonal().clamp_min(0).sqrt()
    elif std is not None:
        sd = torch.as_tensor(std, dtype=torch.float64).reshape(-1).expand(d)
    else:
        raise TypeError("check_mean_close needs the reference distribution's cov (or std): its tolerance must not "
                        "come from the samples it checks")
    se = sd / math.sqrt(n)
    m = s.mean(dim=0)
    bad = (m - mu).abs() > n_se * se
    if not bool(bad.any()):
        return
    msg = (f"The mean of {name} ({n} samples) is {_vec(m)}, but the expected mean is {_vec(mu)}, give or take "
           f"{_vec(n_se * se)} ({n_se:g} standard errors of a correct sampler, sqrt(variance / n)). A correct sampler "
           f"fails this check with probability about {_two_sided_tail(n_se) * d:.0e}.")
    if hint:
        msg += " " + hint
    raise CheckFailed(msg)


def check_cov_close(samples: Any, cov: Any, *, reference: Any = None, n_se: float = 4.0,
                    name: str = "your samples", hint: str | None = None) -> None:
    """The sample covariance of ``samples`` (n, d) is within ``n_se`` standard errors of ``cov`` (d, d), entrywise.

    The standard errors are those of a correct sampler, from the reference, never from the samples under test:
    for Gaussian data Var(S_ij) = (cov_ii cov_jj + cov_ij^2) / n; for other distributions pass ``reference``,
    samples (m, d) of the true distribution drawn by the test, whose fourth moments give
    Var(S_ij) = Var((x_i - mu_i)(x_j - mu_j)) / n.
    """
    s = _samples_2d(samples, name)
    n, d = s.shape
    c = torch.as_tensor(cov, dtype=torch.float64).reshape(d, d)
    centred = s - s.mean(dim=0)
    sample_cov = (centred.unsqueeze(-1) * centred.unsqueeze(-2)).sum(0) / (n - 1)  # (d, d)
    if reference is None:
        var = (c.diagonal().unsqueeze(-1) * c.diagonal().unsqueeze(-2) + c.square())  # (d, d), Gaussian
        source = "for Gaussian samples of the expected covariance"
    else:
        r = torch.as_tensor(reference, dtype=torch.float64).reshape(-1, d)
        rc = r - r.mean(dim=0)
        var = (rc.unsqueeze(-1) * rc.unsqueeze(-2)).var(dim=0)  # (d, d)
        source = "estimated from the reference distribution"
    se = var.clamp_min(0).sqrt() / math.sqrt(n)
    bad = (sample_cov - c).abs() > n_se * se
    if not bool(bad.any()):
        return
    i, j = (int(v) for v in bad.nonzero()[0])
    msg = (f"The covariance of {name} ({n} samples) is off: entry ({i}, {j}) is {sample_cov[i, j]:.4g}, expected "
           f"{c[i, j]:.4g} give or take {n_se * se[i, j]:.2g} ({n_se:g} standard errors of a correct sampler, "
           f"{source}). Sample covariance: {[[round(v, 3) for v in row] for row in sample_cov.tolist()]}; expected: "
           f"{[[round(v, 3) for v in row] for row in c.tolist()]}.")
    if hint:
        msg += " " + hint
    raise CheckFailed(msg)


def check_frequencies(labels: Any, probs: Any, *, n_se: float = 4.0, name: str = "your draws",
                      hint: str | None = None) -> None:
    """The frequency of each value k in ``labels`` (n,) is within ``n_se`` binomial standard errors of probs[k]."""
    lab = check_tensor(labels, name)
    if lab.is_floating_point():
        raise CheckFailed(f"{name} should hold integer labels, got dtype {lab.dtype}.")
    p = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
    p = p / p.sum()
    lab = lab.reshape(-1).long().cpu()
    n = lab.numel()
    if n == 0:
        raise CheckFailed(f"{name} is empty.")
    if int(lab.min()) < 0 or int(lab.max()) >= p.numel():
        raise CheckFailed(f"{name} contains labels outside 0..{p.numel() - 1}: {int(lab.min())}..{int(lab.max())}.")
    freq = torch.bincount(lab, minlength=p.numel()).double() / n
    se = torch.sqrt(p * (1 - p) / n).clamp_min(1.0 / n)
    bad = (freq - p).abs() > n_se * se
    if not bool(bad.any()):
        return
    k = int(bad.nonzero()[0, 0])
    msg = (f"In {name}, value {k} occurs in {100 * freq[k]:.2f}% of {n} draws, but its probability is "
           f"{100 * p[k]:.2f}% give or take {100 * n_se * se[k]:.2f}% ({n_se:g} standard errors, sqrt(p(1-p)/n)). "
           f"All frequencies: {[round(v, 4) for v in freq.tolist()]}; expected: {[round(v, 4) for v in p.tolist()]}.")
    if p.numel() > 1 and bool(((freq - 1.0 / p.numel()).abs() < n_se * se).all()):
        msg += " Every value is about equally frequent: are the weights ignored?"
    if hint:
        msg += " " + hint
    raise CheckFailed(msg)
