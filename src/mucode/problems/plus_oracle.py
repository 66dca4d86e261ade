"""Differential check of a candidate against the reference on EvalPlus inputs.

This file is not imported by the loaders: its source text is copied into every EvalPlus input test snippet
(see ``evalplus.py``), so a snippet is self-contained and the reference never sits in ``setup_code``, which
prompts may show. Snippets run in the candidate's namespace, hence the ``_mucode_`` prefix on every name and
the local imports. The comparison follows EvalPlus's ``check_output`` (evalplus 0.3.1): exact equality, the
per-task special oracles, then ``np.allclose``-style tolerance (rtol 1e-7; atol from the task, or 1e-6 when
the expected output is a float or a sequence of floats). Unlike EvalPlus, expected outputs are computed in
the same process as the candidate's, so set and dict orders agree.
"""


def _mucode_check(candidate, reference_source, name, inputs, atol=0, oracle=""):
    """Raise AssertionError at the first input on which ``candidate`` and the reference ``name`` disagree."""
    import copy

    namespace = {}
    exec(compile(reference_source, "<reference>", "exec"), namespace)
    reference = namespace[name]
    for index, args in enumerate(inputs):
        out = candidate(*copy.deepcopy(args))
        expected = reference(*copy.deepcopy(args))
        if not _mucode_same(out, expected, args, atol, oracle):
            call = f"{name}({', '.join(_mucode_short(arg) for arg in args)})"
            raise AssertionError(f"input {index + 1} of {len(inputs)}: {call} returned {_mucode_short(out)}, "
                                 f"expected {_mucode_short(expected)}")


def _mucode_same(out, expected, args, atol, oracle):
    """Whether ``out`` is an acceptable answer when the reference answered ``expected``."""
    if oracle == "not_none":  # the reference returns a re.Match; only "matched or not" is specified
        expected = expected is not None
        return out == expected if isinstance(out, bool) else expected == (out is not None)
    if oracle == "poly_root":  # HumanEval/32: any root of the polynomial is right
        return abs(_mucode_poly(args[0], out)) <= atol
    exact = _mucode_equal(out, expected)
    if oracle == "set_eq":
        exact = set(out) == set(expected)
    elif oracle == "surface_area":
        exact = exact or _mucode_equal(out, _mucode_surface_area(*args))
    elif oracle == "digit_distance":
        exact = exact or _mucode_equal(out, _mucode_digit_distance(*args))
    if atol == 0 and _mucode_is_floats(expected):
        atol = 1e-6
    if exact or atol == 0:
        return exact
    return type(out) is type(expected) and _mucode_close(out, expected, atol)


def _mucode_equal(a, b):
    try:
        return bool(a == b)
    except Exception:  # e.g. an array's ambiguous truth value
        return False


def _mucode_is_floats(value):
    if isinstance(value, float):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, float) for v in value)


def _mucode_close(out, expected, atol):
    """``np.allclose(out, expected, rtol=1e-7, atol=atol)`` for numbers and (nested) sequences of them."""
    if isinstance(expected, (list, tuple)):
        return (isinstance(out, (list, tuple)) and len(out) == len(expected)
                and all(_mucode_close(o, e, atol) for o, e in zip(out, expected, strict=True)))
    try:
        return abs(out - expected) <= atol + 1e-07 * abs(expected)
    except TypeError:
        return False


def _mucode_poly(coefficients, x):
    import math

    return sum(c * math.pow(x, i) for i, c in enumerate(coefficients))


def _mucode_surface_area(base_edge, height):
    """Mbpp/581 also accepts reading "height" as the pyramid's perpendicular height."""
    import math

    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def _mucode_digit_distance(num1, num2):
    """Mbpp/558 also accepts zero-padding the shorter number."""
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width), strict=True))


def _mucode_short(value, limit=200):
    try:
        text = repr(value)
    except Exception:  # ints beyond sys.get_int_max_str_digits, broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
