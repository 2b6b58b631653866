"""The expression language of cost terms: safe, batched, differentiable.

Users type terms such as ``relu(hand_speed - 0.2) * (dist_hand_person < 0.5)``.
``compile_expression(text, signals)`` parses the text with Python's ``ast``
(``mode="eval"``), checks every node against an allow-list, folds constant
sub-expressions, and builds a tree of small torch closures. The result is a
function from a dict of tensors (each ``(N, H)``, one per signal) to one
``(N, H)`` tensor. Nothing is ever passed to ``eval``, ``exec`` or
``compile``; the only names that resolve are the signals and a few
constants; the only calls are to the functions below, by bare name.

Allowed
    numbers (int or float, |x| <= 1e6); signal names; the constants ``pi``,
    ``e``; ``+ - * / %`` and ``**`` with a constant exponent |p| <= 8; unary
    ``- +``; comparisons ``< <= > >= == !=`` (chains too), giving 0/1 floats,
    or with ``smooth=True`` a sigmoid of the margin (temperature 0.05) for
    the gradient planner; ``and``, ``or``, ``not`` as tensor logic (product,
    ``a + b - ab``, ``1 - a``); calls to ``relu abs min max clip exp log sqrt
    tanh sigmoid where`` and the explicitly smooth ``soft_lt soft_gt``.

Rejected, each with a message and the 1-based column of the culprit
    attribute access (``x.__class__``: the door to object walks); subscripts
    (``x[0]``); strings, bytes and f-strings (format-string tricks); lambdas,
    comprehensions and generators; the walrus ``:=``; ``if``-expressions (use
    ``where``); keyword arguments and ``*``/``**`` splats; lists, tuples,
    dicts and sets; calls to anything not listed or not by bare name (so
    ``__import__``, ``eval``, ``getattr`` are unknown functions); names that
    are not signals or constants (dunders included); bit operations and shifts
    (``1 << 10**9``); powers with a non-constant or large exponent
    (``9 ** 9 ** 9``); constants beyond 1e6, NaN or infinite after folding;
    booleans and ``None``; text longer than 400 characters, more than 200
    nodes, or nesting deeper than 30; a syntax error.

Values: ``exp`` clamps its input to 30 and ``log``/``sqrt`` their input to
small positive numbers, so no finite input produces an infinity; NaN or
infinite signals give NaN or infinity out, which the cost treats as a
violation (see ``agents.cost``).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable

import torch

from common.errors import LabError

MAX_LENGTH = 400  # characters
MAX_NODES = 200
MAX_DEPTH = 30
MAX_CONSTANT = 1e6
MAX_POWER = 8
SMOOTH_TEMPERATURE = 0.05  # in the signals' units: a 5 cm or 0.05 m/s ramp

CONSTANTS = {"pi": math.pi, "e": math.e}

Tensor = torch.Tensor
Fn = Callable[[dict[str, Tensor]], Tensor]


class ExpressionError(LabError):
    """A rejected expression: ``message`` and the 1-based ``column``."""

    def __init__(self, message: str, column: int = 1) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


def _soft_lt(a: Tensor, b: Tensor) -> Tensor:
    return torch.sigmoid((b - a) / SMOOTH_TEMPERATURE)


FUNCTIONS: dict[str, tuple[int, Callable[..., Tensor]]] = {
    # name: (number of arguments, implementation on tensors)
    "relu": (1, torch.relu),
    "abs": (1, torch.abs),
    "min": (2, torch.minimum),
    "max": (2, torch.maximum),
    "clip": (3, lambda x, lo, hi: torch.minimum(torch.maximum(x, lo), hi)),
    "exp": (1, lambda x: torch.exp(torch.clamp(x, max=30.0))),
    "log": (1, lambda x: torch.log(torch.clamp(x, min=1e-9))),
    "sqrt": (1, lambda x: torch.sqrt(torch.clamp(x, min=0.0) + 1e-12)),
    "tanh": (1, torch.tanh),
    "sigmoid": (1, torch.sigmoid),
    "where": (3, lambda c, a, b: torch.where(c > 0.5, a, b)),
    "soft_lt": (2, _soft_lt),
    "soft_gt": (2, lambda a, b: _soft_lt(b, a)),
}

_BINOPS: dict[type, Callable[[Tensor, Tensor], Tensor]] = {
    ast.Add: torch.add,
    ast.Sub: torch.sub,
    ast.Mult: torch.mul,
    ast.Div: torch.div,
    ast.Mod: torch.remainder,
}
_COMPARE: dict[type, Callable[[Tensor, Tensor], Tensor]] = {
    ast.Lt: torch.lt,
    ast.LtE: torch.le,
    ast.Gt: torch.gt,
    ast.GtE: torch.ge,
    ast.Eq: torch.eq,
    ast.NotEq: torch.ne,
}
_SMOOTH_COMPARE: dict[type, Callable[[Tensor, Tensor], Tensor]] = {
    ast.Lt: _soft_lt,
    ast.LtE: _soft_lt,
    ast.Gt: lambda a, b: _soft_lt(b, a),
    ast.GtE: lambda a, b: _soft_lt(b, a),
}
_REJECT = {
    ast.Attribute: "attributes are not allowed (no '.' after a name)",
    ast.Subscript: "subscripts like x[0] are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generators are not allowed",
    ast.NamedExpr: "the walrus operator := is not allowed",
    ast.IfExp: "'a if c else b' is not allowed: write where(c, a, b)",
    ast.JoinedStr: "strings (and f-strings) are not allowed",
    ast.FormattedValue: "strings (and f-strings) are not allowed",
    ast.Starred: "* and ** splats are not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Set: "sets are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}


class Expression:
    """A compiled expression: call it with ``{signal: (N, H) tensor}``."""

    def __init__(self, text: str, fn: Fn, names: frozenset[str]) -> None:
        self.text = text
        self.names = names  # the signals it reads
        self._fn = fn

    def __call__(self, signals: dict[str, Tensor]) -> Tensor:
        shape = next(iter(signals.values())).shape if signals else ()
        like = next(iter(signals.values())) if signals else torch.zeros(())
        out = self._fn(signals).to(device=like.device, dtype=like.dtype)
        return torch.broadcast_to(out, shape) if out.shape != shape else out

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def compile_expression(text: str, signals: Iterable[str], smooth: bool = False) -> Expression:
    """Parse, check and compile ``text`` over the names in ``signals``.

    Raises ``ExpressionError`` (a ``LabError``) with a message and column.
    """
    if not isinstance(text, str):
        raise ExpressionError("the expression must be text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"too long: {len(text)} characters, at most {MAX_LENGTH}", MAX_LENGTH + 1
        )
    stripped = text.strip()
    if not stripped:
        raise ExpressionError("the expression is empty")
    shift = len(text) - len(text.lstrip())  # columns count in the typed text
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as e:
        if not e.offset:  # Python's parser ran out of input: point past the end
            raise ExpressionError(
                "syntax error: the expression ends too early", len(stripped) + 1 + shift
            ) from None
        raise ExpressionError(f"syntax error: {e.msg}", max(1, e.offset) + shift) from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise ExpressionError(f"cannot parse: {type(e).__name__}") from None
    builder = _Builder(set(signals), smooth, shift)
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"too complex: {len(nodes)} parts, at most {MAX_NODES}")
    builder.check_depth(tree.body, 1)
    fn = builder.build(tree.body)
    if isinstance(fn, float):
        const = fn
        fn = lambda env: torch.tensor(const)  # noqa: E731
    return Expression(text, fn, frozenset(builder.used))


class _Builder:
    """Walks the checked tree; returns a float for constant parts, else a closure."""

    def __init__(self, signals: set[str], smooth: bool, shift: int) -> None:
        self.signals = signals
        self.smooth = smooth
        self.shift = shift
        self.used: set[str] = set()

    def error(self, node: ast.AST, message: str) -> ExpressionError:
        return ExpressionError(message, getattr(node, "col_offset", 0) + 1 + self.shift)

    def check_depth(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.error(node, f"nested too deeply (more than {MAX_DEPTH} levels)")
        for child in ast.iter_child_nodes(node):
            if hasattr(child, "col_offset"):  # skip Load and operator tokens
                self.check_depth(child, depth + 1)

    def build(self, node: ast.AST) -> float | Fn:
        for kind, message in _REJECT.items():
            if isinstance(node, kind):
                raise self.error(node, message)
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.error(node, f"{type(node).__name__} is not allowed here")
        return method(node)

    # --- leaves ----------------------------------------------------------------
    def _Constant(self, node: ast.Constant) -> float:
        v = node.value
        if isinstance(v, bool) or v is None:
            raise self.error(node, f"{v!r} is not allowed: use numbers")
        if isinstance(v, str | bytes):
            raise self.error(node, "strings are not allowed")
        if not isinstance(v, int | float):
            raise self.error(node, f"{type(v).__name__} constants are not allowed")
        return self.bounded(node, v)

    def bounded(self, node: ast.AST, v: float) -> float:
        try:
            f = float(v)
        except OverflowError:
            raise self.error(node, f"numbers must be within +-{MAX_CONSTANT:g}") from None
        if not math.isfinite(f) or abs(f) > MAX_CONSTANT:
            raise self.error(node, f"numbers must be finite and within +-{MAX_CONSTANT:g}")
        return f

    def _Name(self, node: ast.Name) -> float | Fn:
        name = node.id
        if name in self.signals:
            self.used.add(name)
            return lambda env: env[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise self.error(node, f"{name} is a function: call it, as in {name}(...)")
        known = ", ".join(sorted(self.signals)) or "none"
        raise self.error(node, f"unknown name {name!r}; the signals are: {known}")

    # --- operators ---------------------------------------------------------------
    def _BinOp(self, node: ast.BinOp) -> float | Fn:
        if isinstance(node.op, ast.Pow):
            return self.power(node)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.error(
                node,
                f"the operator {type(node.op).__name__} is not allowed "
                "(no bit operations or shifts)",
            )
        left, right = self.build(node.left), self.build(node.right)
        return self.lift(op, left, right, node=node)

    def power(self, node: ast.BinOp) -> float | Fn:
        exponent = self.build(node.right)
        if not isinstance(exponent, float):
            raise self.error(node.right, "the exponent of ** must be a number")
        if abs(exponent) > MAX_POWER:
            raise self.error(node.right, f"exponents must be within +-{MAX_POWER}")
        base = self.build(node.left)
        if isinstance(base, float):
            try:
                value = base**exponent
            except (OverflowError, ZeroDivisionError):
                raise self.error(node, "this power is out of range") from None
            if isinstance(value, complex):
                raise self.error(node, "this power is not a real number")
            return self.bounded(node, value)
        return lambda env: torch.pow(base(env), exponent)

    def _UnaryOp(self, node: ast.UnaryOp) -> float | Fn:
        operand = self.build(node.operand)
        if isinstance(node.op, ast.USub):
            return -operand if isinstance(operand, float) else (lambda env: -operand(env))
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            return self.lift(lambda a: 1.0 - self.truth(a), operand, node=node)
        raise self.error(node, "~ (bit inversion) is not allowed")

    def _BoolOp(self, node: ast.BoolOp) -> float | Fn:
        values = [self.build(v) for v in node.values]
        if isinstance(node.op, ast.And):

            def combine(a, b):
                return self.truth(a) * self.truth(b)
        else:

            def combine(a, b):
                a, b = self.truth(a), self.truth(b)
                return a + b - a * b

        out = values[0]
        for v in values[1:]:
            out = self.lift(combine, out, v, node=node)
        return out

    def _Compare(self, node: ast.Compare) -> float | Fn:
        parts = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        out: float | Fn | None = None
        for op, a, b in zip(node.ops, parts[:-1], parts[1:], strict=True):
            # == and != have no smooth version: they stay hard (zero gradient)
            fn = (self.smooth and _SMOOTH_COMPARE.get(type(op))) or _COMPARE.get(type(op))
            if fn is None:
                what = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
                word = what.get(type(op), type(op).__name__)
                raise self.error(node, f"the comparison {word!r} is not allowed")
            term = self.lift(lambda x, y, fn=fn: fn(x, y).to(x.dtype), a, b, node=node)
            out = term if out is None else self.lift(torch.mul, out, term, node=node)
        return out

    def _Call(self, node: ast.Call) -> float | Fn:
        if isinstance(node.func, ast.Attribute):
            raise self.error(node.func, _REJECT[ast.Attribute])
        if not isinstance(node.func, ast.Name):
            raise self.error(node, "only functions called by their bare name are allowed")
        name = node.func.id
        if node.keywords:
            raise self.error(node.keywords[0].value, "keyword arguments are not allowed")
        if name not in FUNCTIONS:
            allowed = ", ".join(FUNCTIONS)
            raise self.error(node, f"unknown function {name!r}; allowed: {allowed}")
        arity, fn = FUNCTIONS[name]
        if len(node.args) != arity:
            raise self.error(
                node, f"{name} takes {arity} argument{'s' * (arity > 1)}, got {len(node.args)}"
            )
        args = [self.build(a) for a in node.args]
        return self.lift(fn, *args, node=node)

    # --- helpers -----------------------------------------------------------------
    @staticmethod
    def truth(x: Tensor) -> Tensor:
        """Values as soft truth in [0, 1] (comparisons already are)."""
        return torch.clamp(x, 0.0, 1.0)

    def lift(self, fn: Callable[..., Tensor], *args: float | Fn, node: ast.AST) -> float | Fn:
        """Apply ``fn`` to constants now (folding, bounded) or to closures later."""
        if all(isinstance(a, float) for a in args):
            value = float(fn(*(torch.tensor(a, dtype=torch.float64) for a in args)))
            if not math.isfinite(value):
                raise self.error(node, "this part is not a finite number (division by zero?)")
            return self.bounded(node, value)

        constants: dict = {}  # (value, dtype, device) -> tensor, made once

        def constant(v: float, ref: Tensor) -> Tensor:
            key = (v, math.copysign(1.0, v), ref.dtype, ref.device)  # -0.0 is not 0.0
            if key not in constants:  # a copy to a GPU waits for it: once, not every plan
                with torch.inference_mode(False):  # usable with gradients too
                    constants[key] = torch.as_tensor(v, dtype=ref.dtype, device=ref.device)
            return constants[key]

        def run(env: dict[str, Tensor]) -> Tensor:
            vals = [a(env) if callable(a) else a for a in args]
            ref = next(v for v in vals if isinstance(v, Tensor))
            return fn(*(v if isinstance(v, Tensor) else constant(v, ref) for v in vals))

        return run
