"""Filters over runs (`top1 > 80 and model.name == 'deit_tiny_patch4_32'`): parsed here, evaluated in the database.

A filter is a small expression tree, never text pasted into SQL: `parse` turns a string into `Compare`, `Loose`,
`All`, `Any_` and `Not` nodes (a tokenizer and a recursive-descent parser), and `Compiler` turns the tree into a
SQLAlchemy expression whose values are bound parameters.

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | "(" expr ")" | compare
    compare := KEY ("==" | "!=" | "<" | "<=" | ">" | ">=") LITERAL | KEY ["not"] "in" "(" LITERAL ("," LITERAL)* ")"
    LITERAL := number | 'text' | "text" | true | false | null | none

An integer literal fits 64 bits and a number a float; parentheses and `not` nest at most MAX_DEPTH deep: beyond
that a filter is a FilterError (one line), never an overflow or a recursion error.

A KEY is a run column (hash, spec, variant, label, profile, seed, status, source, host, error, epoch, started_at,
ended_at: every column `harness results` prints), `info.<key>`, a final metric (top1, params...: the trainer's are
known before any run has them), or a dotted config key, with or without `config.` (`model.name`); `` `odd key` ``
quotes one with other characters. The older `KEY=VALUE` form (one `=`, an unquoted value) still matches as it did:
VALUE compares as a number, a boolean, null (`none`, `null` or nothing) or text, whichever the stored value is.

A comparison is true or false, never unknown: a missing value, or one of another type than the literal, is not
equal to it, so `!=` and `not` keep such runs (as pandas does with NaN).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NoReturn

from sqlalchemy import Float, Text, and_, case, cast, false, func, not_, null, or_, select, true, type_coerce
from sqlalchemy.orm import Session

from harness.store.schema import NO_PROFILE, Experiment, FinalMetric, Metric, Run, RunInfo, RunMembership

COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
# the latest epoch a run reached, as `harness.results.runs` shows it: its heartbeat's or its last metrics', the later
_LAST_METRICS = select(func.max(Metric.epoch)).where(Metric.run_id == Run.id).correlate(Run).scalar_subquery()
_EPOCH = case((Run.epoch.is_(None), _LAST_METRICS), (_LAST_METRICS > Run.epoch, _LAST_METRICS), else_=Run.epoch)
# run columns a filter may name, as `harness.results.runs` names them
COLUMNS: dict[str, Any] = {
    "hash": Run.hash, "spec": Experiment.name, "variant": RunMembership.variant, "label": RunMembership.label,
    "profile": func.nullif(RunMembership.profile, NO_PROFILE), "seed": RunMembership.seed, "status": Run.status,
    "source": Run.source, "host": Run.host, "error": Run.error, "epoch": _EPOCH,
}
NUMERIC_COLUMNS = {"seed", "epoch"}
# times, compared as UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (`started_at >= '2026-12-01'`)
TIME_COLUMNS: dict[str, Any] = {"started_at": Run.started_at, "ended_at": Run.ended_at}
# the final metrics a trained run records (harness/trainer: evaluate, loop, final; `throughput_<protocol>_img_s`
# per protocol): a filter knows them before any run has them, so `top1 > 80` on a store where nothing has
# finished yet keeps no run instead of calling top1 unknown
FINAL_METRICS = (
    "top1", "top5", "val_loss", "train_loss", "lr", "top1_cls", "top5_cls", "top1_dist", "top5_dist", "ema_top1",
    "ema_top5", "teacher_top1", "train_img_s", "data_wait_s", "data_wait_frac", "params", "flops", "train_time_s",
    "throughput_paper_img_s", "throughput_fast_img_s", "peak_mem_mb",
)
TRUE_WORDS, FALSE_WORDS, NULL_WORDS = ("true", "1", "yes"), ("false", "0", "no"), ("", "none", "null")
MAX_LENGTH = 10_000
# nested parentheses and `not`s a filter may hold: far beyond a hand-written one, far below Python's recursion limit
MAX_DEPTH = 64
# an integer literal must fit a 64-bit column: SQLite and PostgreSQL bind nothing wider
INT64 = (-(2 ** 63), 2 ** 63 - 1)


class FilterError(ValueError):
    """A malformed filter or one naming an unknown key: one line, naming it."""


# -- the tree -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    key: str
    op: str  # one of COMPARISONS, or "in"
    value: Any  # a literal (str, int, float, bool, None); a tuple of them for "in"


@dataclass(frozen=True)
class Loose:
    """`KEY=VALUE`: VALUE (text) equals the stored value read as a number, boolean, null or text."""

    key: str
    text: str


@dataclass(frozen=True)
class All:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    part: Any


Node = Compare | Loose | All | Any_ | Not


def keys(node: Node) -> list[str]:
    """The keys a tree names, in order, once each."""
    if isinstance(node, (Compare, Loose)):
        return [node.key]
    parts = (node.part,) if isinstance(node, Not) else node.parts
    return list(dict.fromkeys(k for part in parts for k in keys(part)))


# -- parsing --------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][\w.\-]*|`[^`]+`)
""", re.VERBOSE)
_LOOSE = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*=(?!=)(.*)$", re.DOTALL)
_WORDS = {"and", "or", "not", "in", "true", "false", "null", "none"}
_LITERAL_WORDS = {"true": True, "false": False, "null": None, "none": None}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


def parse(text: str) -> Node:
    """One filter: an expression (see the module docstring) or the older `KEY=VALUE`."""
    if not isinstance(text, str):
        raise FilterError(f"a filter is text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FilterError(f"a filter is at most {MAX_LENGTH:,} characters, got {len(text):,}")
    loose = _LOOSE.match(text)
    if loose:
        return Loose(loose.group(1), loose.group(2).strip())
    return _Parser(text).parse()


def combine(where: str | Mapping[str, Any] | Iterable[Any] | Node | None) -> Node | None:
    """Filters as `harness.results.runs` takes them -> one tree (all must hold), or None for no filter.

    A string is one filter; a mapping is key -> value (a text value compares loosely, as `KEY=VALUE`); a sequence
    holds strings or (key, value) pairs."""
    if where is None or isinstance(where, (Compare, Loose, All, Any_, Not)):
        return where
    if isinstance(where, str):
        items: list[Any] = [where]
    elif isinstance(where, Mapping):
        items = list(where.items())
    else:
        items = list(where)
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append(parse(item))
            continue
        key, value = item
        parts.append(Loose(str(key), value.strip()) if isinstance(value, str) else Compare(str(key), "==", value))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else All(tuple(parts))


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0
        self.depth = 0

    def _tokenize(self, text: str) -> list[_Token]:
        tokens, at = [], 0
        while at < len(text):
            m = _TOKEN.match(text, at)
            if m is None:
                self._fail(f"unexpected '{text[at]}' at character {at + 1}")
            assert m.lastgroup is not None
            if m.lastgroup != "space":
                kind, word = m.lastgroup, m.group()
                if kind == "name" and word.lower() in _WORDS:
                    kind, word = "word", word.lower()
                tokens.append(_Token(kind, word, at))
            at = m.end()
        return tokens

    def _fail(self, why: str) -> NoReturn:
        raise FilterError(f"malformed filter '{self.text}': {why}")

    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self, what: str) -> _Token:
        token = self._peek()
        if token is None:
            self._fail(f"expected {what} at the end")
        assert token is not None
        self.i += 1
        return token

    def _accept(self, kind: str, text: str) -> bool:
        token = self._peek()
        if token is not None and token.kind == kind and token.text == text:
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            self._fail("it is empty")
        node = self._or()
        token = self._peek()
        if token is not None:
            self._fail(f"unexpected '{token.text}' at character {token.at + 1}")
        return node

    def _or(self) -> Node:
        parts = [self._and()]
        while self._accept("word", "or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def _and(self) -> Node:
        parts = [self._not()]
        while self._accept("word", "and"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def _not(self) -> Node:
        token = self._peek()
        if token is not None and (token.kind, token.text) in (("word", "not"), ("punct", "(")):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self._fail(f"more than {MAX_DEPTH} nested parentheses or 'not' {self._where()}")
        if self._accept("word", "not"):
            node: Node = Not(self._not())
        elif self._accept("punct", "("):
            node = self._or()
            if not self._accept("punct", ")"):
                self._fail(f"expected ')' {self._where()}")
        else:
            return self._compare()
        self.depth -= 1
        return node

    def _where(self) -> str:
        token = self._peek()
        return "at the end" if token is None else f"at '{token.text}' (character {token.at + 1})"

    def _compare(self) -> Node:
        token = self._next("a key")
        if token.kind != "name":
            self._fail(f"expected a key at '{token.text}' (character {token.at + 1})")
        key = token.text.strip("`")
        negate = self._accept("word", "not")
        if self._accept("word", "in"):
            if not self._accept("punct", "("):
                self._fail(f"expected '(' after 'in' {self._where()}")
            values = [self._literal()]
            while self._accept("punct", ","):
                values.append(self._literal())
            if not self._accept("punct", ")"):
                self._fail(f"expected ',' or ')' {self._where()}")
            node: Node = Compare(key, "in", tuple(values))
            return Not(node) if negate else node
        if negate:
            self._fail(f"expected 'in' after '{key} not'")
        op = self._peek()
        if op is None or op.kind != "op":
            self._fail(f"expected a comparison (==, !=, <, <=, >, >=, in) after '{key}' {self._where()}; "
                       "or write the older KEY=VALUE")
        self.i += 1
        assert op is not None
        value = self._literal()
        if op.text not in ("==", "!=") and (value is None or isinstance(value, bool)):
            self._fail(f"'{op.text}' compares numbers or text, not {str(value).lower()}")
        return Compare(key, op.text, value)

    def _literal(self) -> Any:
        token = self._next("a value")
        if token.kind == "number":
            if re.fullmatch(r"[-+]?\d+", token.text):
                # the length first: int() refuses more than 4300 digits with an error of its own
                if len(token.text.lstrip("+-").lstrip("0")) > 19 or not INT64[0] <= int(token.text) <= INT64[1]:
                    self._fail(f"the integer at character {token.at + 1} is beyond 64 bits")
                return int(token.text)
            number = float(token.text)
            if math.isinf(number):
                self._fail(f"the number at character {token.at + 1} is beyond the range of a float")
            return number
        if token.kind == "string":
            body = token.text[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if token.kind == "word" and token.text in _LITERAL_WORDS:
            return _LITERAL_WORDS[token.text]
        self._fail(f"expected a value (a number, 'text', true, false or null) at '{token.text}' "
                   f"(character {token.at + 1})")


def loose_values(text: str) -> list[Any]:
    """The literals a `KEY=VALUE` text equals: null, a boolean, a number, and always the text itself."""
    text = text.strip()
    low = text.lower()
    values: list[Any] = [None] if low in NULL_WORDS else []
    if low in TRUE_WORDS:
        values.append(True)
    if low in FALSE_WORDS:
        values.append(False)
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number == number:  # not NaN: NaN is stored as a missing value
            values.append(number)
    return values + [text]


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    raise FilterError(f"a filter value is a number, text, true, false or null; got {type(value).__name__}")


# -- compiling to SQL -----------------------------------------------------------------------------------------


class _Operand:
    """A value a key names: `typed(kind)` is it where it is of that kind (else NULL); `missing` where it is absent."""

    def typed(self, kind: str) -> Any:
        raise NotImplementedError

    def missing(self) -> Any:
        raise NotImplementedError

    def compare(self, op: str, value: Any) -> Any:
        """A two-valued comparison with one non-null literal (`in`: a tuple of them)."""
        if op == "in":  # one IN per kind of value: each reads the stored value once, not once per value
            by_kind: dict[str, list[Any]] = {}
            for v in value:
                by_kind.setdefault(kind_of(v), []).append(int(v) if isinstance(v, bool) else v)
            parts = [func.coalesce(operand.in_(values), false()) for kind, values in by_kind.items()
                     if (operand := self.typed(kind)) is not None]
            return or_(*parts) if parts else false()
        if op == "!=":
            return not_(self.compare("==", value))
        kind = kind_of(value)
        operand = self.typed(kind)
        if operand is None:
            return false()
        literal = int(value) if kind == "bool" else value
        expr = {"==": operand == literal, "<": operand < literal, "<=": operand <= literal,
                ">": operand > literal, ">=": operand >= literal}[op]
        return func.coalesce(expr, false())


class _Column(_Operand):
    def __init__(self, column: Any, numeric: bool):
        self.column, self.numeric = column, numeric

    def typed(self, kind: str) -> Any:
        return self.column if kind == ("number" if self.numeric else "text") else None

    def missing(self) -> Any:
        return self.column.is_(None)


class _Config(_Operand):
    """A dotted key inside `runs.config`: SQLite's JSON functions, PostgreSQL's jsonb functions."""

    def __init__(self, parts: list[str], dialect: str):
        self.parts, self.sqlite = parts, dialect == "sqlite"
        if self.sqlite:
            path = "$" + "".join(f'."{p}"' for p in parts)
            self.kind = func.json_type(Run.config, path)
            self.value = func.json_extract(Run.config, path)
        else:
            self.node = func.jsonb_extract_path(Run.config, *parts)
            self.kind = func.jsonb_typeof(self.node)
            self.value = func.jsonb_extract_path_text(Run.config, *parts)

    def typed(self, kind: str) -> Any:
        if self.sqlite:
            return {"number": case((self.kind.in_(["integer", "real"]), self.value)),
                    "text": case((self.kind == "text", self.value)),
                    "bool": case((self.kind == "true", 1), (self.kind == "false", 0))}[kind]
        return {"number": case((self.kind == "number", cast(self.value, Float))),
                "text": case((self.kind == "string", self.value)),
                "bool": case((and_(self.kind == "boolean", self.value == "true"), 1),
                             (self.kind == "boolean", 0))}[kind]

    def missing(self) -> Any:
        absent = self.kind.is_(None) if self.sqlite else self.node.is_(None)
        return func.coalesce(or_(absent, self.kind == "null"), true())

    def present(self) -> Any:
        return self.kind.isnot(None) if self.sqlite else self.node.isnot(None)


class _Rows(_Operand):
    """A final metric (numbers) or an info key (text): rows of another table, found through an index."""

    def __init__(self, table: Any, name_column: Any, name: str, kind: str):
        self.table, self.name_column, self.name, self.kind = table, name_column, name, kind

    def _ids(self, *conditions: Any) -> Any:
        return Run.id.in_(select(self.table.run_id).where(self.name_column == self.name, *conditions))

    def typed(self, kind: str) -> Any:  # only `compare` reads this operand
        raise AssertionError("unused")

    def missing(self) -> Any:
        return not_(self._ids(self.table.value.isnot(None)))

    def compare(self, op: str, value: Any) -> Any:
        if op == "!=":
            return not_(self.compare("==", value))
        values = value if op == "in" else (value,)
        wanted = [v for v in values if kind_of(v) == self.kind]
        if self.kind == "text":  # info values are text: a number given compares as its text
            wanted += [str(v) for v in values if kind_of(v) == "number" and op in ("==", "in")]
        if not wanted:
            return false()
        column = self.table.value
        if op in ("==", "in"):
            return self._ids(column.in_(wanted))
        return self._ids({"<": column < wanted[0], "<=": column <= wanted[0], ">": column > wanted[0],
                          ">=": column >= wanted[0]}[op])


class Compiler:
    """Filter trees -> SQLAlchemy conditions on the runs query, each key resolved (and checked) against the store.

    `strict=False` is for the store's own queries, whose keys are written in code, not typed by a user: a key no
    run holds is then absent from every run (so no run equals one of its values) instead of a FilterError."""

    def __init__(self, session: Session, dialect: str, strict: bool = True):
        self.session, self.dialect, self.strict = session, dialect, strict
        self._resolved: dict[str, _Operand] = {}

    def __call__(self, node: Node) -> Any:
        for key in keys(node):
            self._operand(key)  # every unknown key is an error, even in a branch that would not be reached
        return self._compile(node)

    def narrowing(self, node: Node) -> Any:
        """A condition the filter implies that an index answers (its final-metric and info comparisons joined by
        `and`), or None: the runs it keeps include the filter's, found without reading any config."""
        parts = node.parts if isinstance(node, All) else (node,)
        indexed = [self._compile(p) for p in parts
                   if isinstance(p, Compare) and isinstance(self._operand(p.key), _Rows) and p.op != "!="
                   and p.value is not None and not (p.op == "in" and None in p.value)]
        return and_(*indexed) if indexed else None

    def _compile(self, node: Node) -> Any:
        if isinstance(node, All):
            return and_(*(self._compile(p) for p in node.parts))
        if isinstance(node, Any_):
            return or_(*(self._compile(p) for p in node.parts))
        if isinstance(node, Not):
            return not_(self._compile(node.part))
        operand = self._operand(node.key)
        if isinstance(node, Loose):
            values = loose_values(node.text)
            return or_(*(operand.missing() if v is None else operand.compare("==", v) for v in values))
        if node.op == "in":
            nulls = any(v is None for v in node.value)
            found = operand.compare("in", tuple(v for v in node.value if v is not None))
            return or_(found, operand.missing()) if nulls else found
        if node.value is None:
            return operand.missing() if node.op == "==" else not_(operand.missing())
        return operand.compare(node.op, node.value)

    def _operand(self, key: str) -> _Operand:
        if key not in self._resolved:
            self._resolved[key] = self._resolve(key)
        return self._resolved[key]

    def _resolve(self, key: str) -> _Operand:
        if key in COLUMNS:
            return _Column(COLUMNS[key], key in NUMERIC_COLUMNS)
        if key in TIME_COLUMNS:
            column = TIME_COLUMNS[key]
            as_text = (type_coerce(column, Text) if self.dialect == "sqlite"
                       else func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI:SS.US"))
            return _Column(case((column.isnot(None), as_text)), False)
        if key in FINAL_METRICS:
            return _Rows(FinalMetric, FinalMetric.name, key, "number")
        if key.startswith("info."):
            if self._exists(select(RunInfo.run_id).where(RunInfo.key == key[5:])):
                return _Rows(RunInfo, RunInfo.key, key[5:], "text")
        else:
            if not key.startswith("config.") and self._exists(
                    select(FinalMetric.run_id).where(FinalMetric.name == key)):
                return _Rows(FinalMetric, FinalMetric.name, key, "number")
            parts = key.removeprefix("config.").split(".")
            config = _Config(parts, self.dialect)
            if all(parts) and self._exists(select(Run.id).where(config.present())):
                return config
        if not self.strict or not self._exists(select(Run.id)):
            return _Column(null(), False)  # an empty store: every key is absent, no run matches
        raise FilterError(f"unknown key '{key}' in a filter: not a run column, final metric, info or config key "
                          f"of any run in this store{self._hint(key)}")

    def _exists(self, query: Any) -> bool:
        return self.session.execute(query.limit(1)).first() is not None

    def _hint(self, key: str) -> str:
        names = list(COLUMNS) + list(TIME_COLUMNS)
        names += [n for (n,) in self.session.execute(select(FinalMetric.name).distinct())]
        names += [f"info.{k}" for (k,) in self.session.execute(select(RunInfo.key).distinct())]
        latest = self.session.execute(select(Run.config).order_by(Run.id.desc()).limit(1)).scalar()
        names += _flat_keys(latest or {})
        key = key.removeprefix("config.")
        # what this store holds first, then the metrics no run has yet
        close = difflib.get_close_matches(key, names, n=5)
        close += difflib.get_close_matches(key, [n for n in FINAL_METRICS if n not in close], n=5 - len(close))
        return f"; did you mean: {', '.join(close)}" if close else ""


def _flat_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out += _flat_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out
