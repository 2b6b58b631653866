"""The expression language against known answers and hostile input."""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.expressions import ExpressionError, compile_expression

SIGNALS = ("hand_speed", "dist_hand_person", "x", "y")


def sig(**values) -> dict[str, torch.Tensor]:
    base = {k: torch.zeros(3, 4) for k in SIGNALS}
    for k, v in values.items():
        base[k] = torch.as_tensor(v, dtype=torch.float32).expand(3, 4).clone()
    return base


def value(text: str, smooth: bool = False, **values) -> torch.Tensor:
    return compile_expression(text, SIGNALS, smooth=smooth)(sig(**values))


def test_the_talks_guardrail():
    text = "relu(hand_speed - 0.2) * (dist_hand_person < 0.5)"
    assert torch.allclose(value(text, hand_speed=0.5, dist_hand_person=0.3), torch.tensor(0.3))
    assert torch.all(value(text, hand_speed=0.5, dist_hand_person=0.7) == 0)
    assert torch.all(value(text, hand_speed=0.1, dist_hand_person=0.3) == 0)
    out = value(text, hand_speed=0.5, dist_hand_person=0.3)
    assert out.shape == (3, 4) and out.dtype == torch.float32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x + y * 2", 0.5 + 0.25 * 2),
        ("(x - y) / 2", 0.125),
        ("x ** 2", 0.25),
        ("-x", -0.5),
        ("abs(-x)", 0.5),
        ("min(x, y)", 0.25),
        ("max(x, y)", 0.5),
        ("clip(x, 0, 0.3)", 0.3),
        ("sqrt(x * x + y * y)", (0.25 + 0.0625) ** 0.5),
        ("where(x > y, 1, 2)", 1.0),
        ("x > y and y > 0", 1.0),
        ("x < y or y < 0", 0.0),
        ("not x < y", 1.0),
        ("0 < y < x", 1.0),
        ("0 < x < y", 0.0),
        ("2 * pi", 2 * 3.141592653589793),
        ("exp(x * 1000) > 1e6", 1.0),  # clamped at exp(30): large, never infinite
        ("log(x - x) > -100", 1.0),  # log clamps to 1e-9: -20.7
        ("10 % 3", 1.0),
    ],
)
def test_known_answers(text, expected):
    assert torch.allclose(value(text, x=0.5, y=0.25), torch.tensor(expected), rtol=1e-5)


def test_smooth_comparisons_have_a_gradient():
    s = sig(hand_speed=0.3, dist_hand_person=0.45)
    s["dist_hand_person"].requires_grad_(True)
    out = compile_expression(
        "relu(hand_speed - 0.2) * (dist_hand_person < 0.5)", SIGNALS, smooth=True
    )(s)
    out.sum().backward()
    assert s["dist_hand_person"].grad.abs().sum() > 0
    hard = compile_expression("dist_hand_person < 0.5", SIGNALS)(sig(dist_hand_person=0.45))
    soft = compile_expression("dist_hand_person < 0.5", SIGNALS, smooth=True)(
        sig(dist_hand_person=0.45)
    )
    assert torch.all(hard == 1) and torch.all((soft > 0.5) & (soft < 1))


HOSTILE = [
    # (text, a word the message must hold, the 1-based column)
    ("relu(hand_speed - ", "never closed", 5),
    ("x.__class__", "attributes", 1),
    ("x.__class__.__mro__[1].__subclasses__()", "attributes", 1),
    ("().__class__", "attributes", 1),
    ("__import__('os').system('ls')", "attributes", 1),
    ("__import__('os')", "unknown function", 1),
    ("eval('1')", "unknown function", 1),
    ("exec('x=1')", "unknown function", 1),
    ("getattr(x, 'y')", "unknown function", 1),
    ("open('/etc/passwd')", "unknown function", 1),
    ("__builtins__", "unknown name", 1),
    ("x + __dict__", "unknown name", 5),
    ("'{0.__class__}'.format(x)", "attributes", 1),
    ("f'{x}'", "strings", 1),
    ("'abc'", "strings", 1),
    ("b'abc'", "strings", 1),
    ("x * 'a'", "strings", 5),
    ("9 ** 9 ** 9", "exponents", 11),  # the innermost exponent is already too large
    ("x ** 100", "exponents", 6),
    ("x ** y", "exponent", 6),
    ("2 ** 1000", "exponents", 6),
    ("1 << 10 ** 9", "shifts", 1),
    ("x >> 2", "shifts", 1),
    ("x & 1", "bit", 1),
    ("~x", "bit", 1),
    ("1e400", "finite", 1),
    ("10 ** 7", "within", 1),
    ("1000000 * 1000000", "within", 1),
    ("1 / 0", "finite", 1),
    ("(" * 40 + "x" + ")" * 40, None, None),  # parentheses alone make no nesting: fine
    ("relu(" * 40 + "x" + ")" * 40, "nested", 146),
    ("-" * 50 + "x", "nested", 31),
    ("x" + "+x" * 80, "too complex", 1),
    ("x" + " + x" * 150, "too long", 401),
    ("lambda: 1", "lambdas", 1),
    ("(lambda: 1)()", "bare name", 1),
    ("[i for i in x]", "comprehensions", 1),
    ("{i: 1 for i in x}", "comprehensions", 1),
    ("sum(i for i in x)", "unknown function", 1),
    ("relu(i for i in x)", "generators", 5),
    ("(y := 1)", "walrus", 2),
    ("x if y else 1", "where", 1),
    ("x[0]", "subscripts", 1),
    ("[x, y]", "lists", 1),
    ("(x, y)", "tuples", 1),
    ("{x}", "sets", 1),
    ("{'a': x}", "dicts", 1),
    ("relu(*x)", "splats", 6),
    ("relu(x=1)", "keyword", 8),
    ("max(x)", "takes 2", 1),
    ("relu", "function", 1),
    ("True", "numbers", 1),
    ("None", "numbers", 1),
    ("x is y", "is", 1),
    ("x in y", "in", 1),
    ("1j", "complex", 1),
    ("nan", "unknown name", 1),
    ("inf", "unknown name", 1),
    ("speed", "unknown name", 1),
    ("", "empty", 1),
    ("   ", "empty", 1),
    ("x = 1", "syntax", 3),
    ("import os", "syntax", 1),
    ("x;y", "syntax", 2),
    ("x\ny", "syntax", 1),
]


@pytest.mark.parametrize(("text", "word", "column"), HOSTILE)
def test_hostile_input_gets_the_error_with_its_column(text, word, column):
    if word is None:
        assert compile_expression(text, SIGNALS)(sig(x=1.0)).shape == (3, 4)
        return
    with pytest.raises(ExpressionError) as err:
        compile_expression(text, SIGNALS)
    assert word in err.value.message, err.value.message
    assert err.value.column == column, (err.value.column, err.value.message)


def test_nan_and_inf_signals_flow_through_without_a_crash():
    f = compile_expression("relu(hand_speed - 0.2) * (dist_hand_person < 0.5)", SIGNALS)
    s = sig(hand_speed=float("nan"), dist_hand_person=float("inf"))
    out = f(s)
    assert out.shape == (3, 4)  # NaN or 0, and the cost treats NaN as a violation


def test_leading_spaces_keep_columns_of_the_typed_text():
    with pytest.raises(ExpressionError) as err:
        compile_expression("   x + foo", SIGNALS)
    assert err.value.column == 8
    with pytest.raises(ExpressionError, match="syntax") as err:
        compile_expression("  relu(x - ", SIGNALS)
    assert err.value.column == 7


@pytest.mark.parametrize("text", ["relu(x - 0.2) +", "x ==", "not", " x *"])
def test_an_expression_that_ends_too_early_points_past_its_end(text):
    with pytest.raises(ExpressionError, match="ends too early") as err:
        compile_expression(text, SIGNALS)
    assert err.value.column == len(text.rstrip()) + 1


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_fuzz_any_text_compiles_or_gets_the_error(text):
    t0 = time.perf_counter()
    try:
        f = compile_expression(text, SIGNALS)
    except ExpressionError as e:
        assert e.column >= 1
    else:
        out = f(sig(x=0.5, y=0.25, hand_speed=0.1, dist_hand_person=1.0))
        assert out.shape == (3, 4)
    assert time.perf_counter() - t0 < 2.0  # never a hang


ATOMS = st.sampled_from(
    [
        "x",
        "y",
        "hand_speed",
        "0.5",
        "2",
        "pi",
        "1e6",
        "-3",
        "foo",
        "__class__",
        "'s'",
        "x.y",
        "relu",
        "()",
        "[]",
    ]
)
OPS = st.sampled_from(
    [
        " + ",
        " - ",
        " * ",
        " / ",
        " ** ",
        " % ",
        " < ",
        " >= ",
        " and ",
        " or ",
        " << ",
        " & ",
        ", ",
        " if ",
        " for ",
        ":= ",
        ".",
    ]
)


@st.composite
def expression_like(draw):
    parts = [draw(ATOMS)]
    for _ in range(draw(st.integers(0, 12))):
        op, atom = draw(OPS), draw(ATOMS)
        if draw(st.booleans()):
            fn = draw(st.sampled_from(["relu", "max", "clip", "exp", "eval", "where", ""]))
            atom = f"{fn}({atom})"
        parts += [op, atom]
    return "".join(parts)


@settings(max_examples=600, deadline=None)
@given(expression_like())
def test_fuzz_expression_like_text(text):
    try:
        f = compile_expression(text, SIGNALS)
    except ExpressionError as e:
        assert 1 <= e.column <= len(text) + 1
    else:
        out = f(sig(x=0.5, y=0.25, hand_speed=0.1, dist_hand_person=1.0))
        assert out.shape == (3, 4)
