"""An exact calculator that never calls ``eval``.

Expressions are parsed with :func:`ast.parse` and walked over a whitelist of node types;
numbers are :class:`fractions.Fraction`, so ``0.1 + 0.2`` is exactly ``0.3``. Every resource is
bounded *before* it is spent: input length, nesting depth, node count, exponent size and the
bit length of every intermediate result. Hostile input (exponent towers, megabyte strings,
names, attributes, lambdas, comprehensions) therefore fails with a clear message within
milliseconds, and nothing else happens.

Supported: ``+ - * / ** %``, parentheses, unary ``-``/``+``, integer and decimal literals
(``1_000``, ``2.5``, ``1e3``), and the functions ``sqrt, abs, round, min, max``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from llm_trainer.core.errors import ToolError

MAX_EXPRESSION_LENGTH = 512
MAX_DEPTH = 32
MAX_EXPONENT = 1024
#: Bound on numerator and denominator of every intermediate result (about 1233 decimal digits).
MAX_RESULT_BITS = 4096
_MAX_LITERAL_DIGITS = 1200  # 10**1200 needs about 3986 bits, under MAX_RESULT_BITS
#: Non-terminating results are rounded to this many decimal places when printed.
DISPLAY_DECIMALS = 6

SPEC: Mapping[str, Any] = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": (
            "Evaluate an arithmetic expression exactly. Supports + - * / ** % and parentheses, "
            "and the functions sqrt, abs, round, min, max. Example: (12 + 7) * 3"
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The arithmetic expression to evaluate, e.g. '(12 + 7) * 3'.",
                }
            },
            "required": ["expression"],
        },
    },
}


Number = int | Fraction
"""Values stay plain ``int`` while they can (fast) and become ``Fraction`` only when a division
or a decimal literal needs one; both are exact."""


def _normal(value: Number) -> Number:
    """Bound the size of a result and turn integral fractions back into ``int``."""
    if isinstance(value, int):
        if value.bit_length() > MAX_RESULT_BITS:
            raise ToolError(f"result too large (more than {MAX_RESULT_BITS} bits)")
        return value
    if (
        value.numerator.bit_length() > MAX_RESULT_BITS
        or value.denominator.bit_length() > MAX_RESULT_BITS
    ):
        raise ToolError(f"result too large (more than {MAX_RESULT_BITS} bits)")
    return value.numerator if value.denominator == 1 else value


def _int_text(n: int) -> str:
    """``str(n)`` for any int this module makes, whatever ``sys.set_int_max_str_digits()`` says
    (the process may lower it to 640 digits; our results reach about 1,233)."""
    return str(n) if n.bit_length() <= 2000 else str(Decimal(n))  # 2000 bits: < 603 digits


def _pow(base: Number, exponent: Number) -> Number:
    if not isinstance(exponent, int):
        raise ToolError("non-integer exponents are not supported; use sqrt() for square roots")
    if abs(exponent) > MAX_EXPONENT:
        shown = _int_text(exponent) if exponent.bit_length() <= 64 else "too large"
        raise ToolError(f"exponent {shown} out of range (|exponent| <= {MAX_EXPONENT})")
    if base == 0 and exponent < 0:
        raise ToolError("division by zero (zero to a negative power)")
    # Bound the size of the result before computing it.
    frac = Fraction(base)
    bits = max(frac.numerator.bit_length(), frac.denominator.bit_length())
    if bits > 1 and bits * abs(exponent) > MAX_RESULT_BITS:
        raise ToolError(f"result too large (more than {MAX_RESULT_BITS} bits)")
    return Fraction(base) ** exponent if exponent < 0 else base**exponent


def _div(a: Number, b: Number) -> Number:
    if b == 0:
        raise ToolError("division by zero")
    return Fraction(a, b) if isinstance(a, int) and isinstance(b, int) else Fraction(a) / b


def _mod(a: Number, b: Number) -> Number:
    if b == 0:
        raise ToolError("modulo by zero")
    return a % b


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _div,
    ast.Pow: _pow,
    ast.Mod: _mod,
}
FUNCTIONS = ("sqrt", "abs", "round", "min", "max")
_OPERATOR_SYMBOLS = {
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
}


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise ToolError("sqrt of a negative number")
    x = Fraction(x)
    num, den = math.isqrt(x.numerator), math.isqrt(x.denominator)
    if num * num == x.numerator and den * den == x.denominator:
        return Fraction(num, den)  # exact for perfect squares
    with localcontext() as ctx:
        ctx.prec = 40
        root = (Decimal(x.numerator) / Decimal(x.denominator)).sqrt()
    return Fraction(root)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or not 0 <= ndigits <= 12:
        raise ToolError("round() digits must be an integer between 0 and 12")
    return round(Fraction(x), ndigits)


def _arity(name: str, lo: int, hi: int, args: list[Number]) -> None:
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise ToolError(f"{name}() takes {want} argument(s), got {len(args)}")


def _call(name: str, args: list[Number]) -> Number:
    if name == "sqrt":
        _arity(name, 1, 1, args)
        return _sqrt(args[0])
    if name == "abs":
        _arity(name, 1, 1, args)
        return -args[0] if args[0] < 0 else args[0]
    if name == "round":
        _arity(name, 1, 2, args)
        return _round(*args)
    _arity(name, 1, 16, args)  # min / max
    return min(args) if name == "min" else max(args)


def _eval(node: ast.AST, depth: int, source: bytes) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError(f"expression nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise ToolError(f"unsupported operator {symbol!r}")
        left = _eval(node.left, depth + 1, source)
        right = _eval(node.right, depth + 1, source)
        return _normal(op(left, right))
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToolError(f"unsupported literal {value!r}; only numbers are allowed")
        if isinstance(value, float):
            # The exact decimal value of the literal as written (0.1 stays 1/10); AST offsets
            # count UTF-8 bytes.
            literal = source[node.col_offset : node.end_col_offset].decode().replace("_", "")
            mantissa, _, exponent = literal.lower().partition("e")
            # Bound the size before Fraction() builds 10**exponent.
            if exponent and abs(int(exponent)) + len(mantissa) > _MAX_LITERAL_DIGITS:
                raise ToolError(f"number {literal[:20]!r} out of range")
            return _normal(Fraction(literal))
        return _normal(value)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return -_eval(node.operand, depth + 1, source)
        if isinstance(node.op, ast.UAdd):
            return _eval(node.operand, depth + 1, source)
        raise ToolError(f"unsupported unary operator {type(node.op).__name__}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise ToolError(f"only plain calls of {', '.join(FUNCTIONS)} are allowed")
        if node.func.id not in FUNCTIONS:
            raise ToolError(f"unknown function {node.func.id!r}; available: {', '.join(FUNCTIONS)}")
        args = [_eval(a, depth + 1, source) for a in node.args]
        return _normal(_call(node.func.id, args))
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r}; only numbers and {', '.join(FUNCTIONS)}()")
    raise ToolError(f"unsupported syntax: {type(node).__name__}")


def evaluate(expression: str) -> Fraction:
    """Evaluate ``expression`` exactly.

    >>> evaluate("(12 + 7) * 3"), evaluate("0.1 + 0.2"), evaluate("7 / 2")
    (Fraction(57, 1), Fraction(3, 10), Fraction(7, 2))

    Raises:
        ToolError: on anything outside the whitelist or over a bound, with a clear message.
    """
    return Fraction(_evaluate(expression))


def _evaluate(expression: str) -> Number:
    if not isinstance(expression, str):
        raise ToolError(f"expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolError(
            f"expression too long ({len(expression)} > {MAX_EXPRESSION_LENGTH} characters)"
        )
    text = " ".join(expression.replace("×", "*").replace("÷", "/").replace("−", "-").split())
    if not text:
        raise ToolError("empty expression")
    # Bound nesting before the parser sees it (the C parser recurses on brackets). With the
    # length bound this also bounds the number of syntax nodes, hence all the work below.
    depth = max_depth = 0
    if text.count("(") + text.count("[") + text.count("{") > MAX_DEPTH:  # else: cannot be deeper
        for ch in text:
            if ch in "([{":
                depth += 1
                max_depth = max(max_depth, depth)
            elif ch in ")]}":
                depth -= 1
    if max_depth > MAX_DEPTH:
        raise ToolError(f"expression nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        tree = ast.parse(text, mode="eval")
    except UnicodeEncodeError as exc:  # a lone surrogate, which cannot be UTF-8 encoded
        bad = exc.object[exc.start : exc.end]
        raise ToolError(f"invalid expression: invalid character {bad!r}") from None
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc) or type(exc).__name__
        raise ToolError(f"invalid expression: {detail}") from None
    return _eval(tree.body, 0, text.encode())


def format_number(value: Number) -> str:
    """Print a result: integers exactly, terminating decimals exactly (up to 12 places),
    anything else rounded to :data:`DISPLAY_DECIMALS` places.

    >>> format_number(Fraction(57)), format_number(Fraction(7, 2)), format_number(Fraction(1, 3))
    ('57', '3.5', '0.333333')
    """
    if isinstance(value, int) or value.denominator == 1:
        return _int_text(int(value))
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    places = max(twos, fives) if den == 1 and max(twos, fives) <= 12 else DISPLAY_DECIMALS
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    digits = _int_text(abs(scaled)).rjust(places + 1, "0")
    text = f"{sign}{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def calculator(arguments: Mapping[str, Any]) -> str:
    """The tool: ``{"expression": str}`` -> the formatted result."""
    expression = arguments.get("expression")
    if not isinstance(expression, str):
        raise ToolError("missing required string argument 'expression'")
    return format_number(_evaluate(expression))
