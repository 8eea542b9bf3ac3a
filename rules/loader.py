"""Loading the rules file with errors a person can act on, and hot reloading it.

Rules are edited by hand and deployed without a restart, so a bad edit must be
reported as ``<field path> (line N, column M): <message>`` for every problem at
once, and a running server must keep the rules it has when the new file is invalid.

YAML is parsed once into a node tree (PyYAML's composer records where each node
starts), from which both the data and a map of field path -> (line, column) are
built. JSON files are read with :mod:`json` (exact JSON semantics); their positions
come from the same YAML composer, which reads JSON as well. Lines and columns count
from 1; a field's position is its key's (an item's, in a list).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from app.core.errors import SlotsyncError
from rules.schema import RuleProblems, RulesFile

log = logging.getLogger(__name__)

# A rules file is hand-written: a few hundred visit types fit in far less. Larger
# uploads (console, admin API) are refused before they are parsed.
MAX_RULES_BYTES = 512 * 1024

Loc = tuple[str | int, ...]
Position = tuple[int, int]  # (line, column), from 1


class Problem(NamedTuple):
    """One thing wrong with a rules file: the field's path, where it is, and what."""

    path: str
    line: int | None
    column: int | None
    message: str

    @property
    def where(self) -> str:
        if self.line is None:
            return ""
        if self.column is None:
            return f" (line {self.line})"
        return f" (line {self.line}, column {self.column})"

    def as_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


def _problem(path: str, position: Position | None, message: str) -> Problem:
    line, column = position if position is not None else (None, None)
    return Problem(path, line, column, message)


class RulesError(SlotsyncError):
    """The rules file cannot be used; ``problems`` lists each :class:`Problem`."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid rules file ({len(problems)} problem(s))"]
        for problem in problems:
            lines.append(f"  {problem.path}{problem.where}: {problem.message}")
        super().__init__("\n".join(lines))


def load_rules(path: str | Path) -> RulesFile:
    """Read and validate a rules file (``.json`` = JSON, anything else = YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(str(path), [_problem("(file)", None, f"cannot read: {exc}")]) from exc
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_rules(text, source=str(path), fmt=fmt)


def parse_rules(text: str, *, source: str = "<string>", fmt: str = "yaml") -> RulesFile:
    """Validate rules given as text; ``fmt`` is ``"yaml"`` or ``"json"``."""
    data, lines = _parse(text, source, fmt)
    if not isinstance(data, dict):
        raise RulesError(
            source, [_problem("(document)", (1, 1), "the rules file must be a mapping")]
        )
    try:
        return RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(source, _problems(exc, lines)) from None


def _parse(text: str, source: str, fmt: str) -> tuple[Any, dict[Loc, Position]]:
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problem = _problem("(document)", (exc.lineno, exc.colno), exc.msg)
            raise RulesError(source, [problem]) from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return data, {}
        lines: dict[Loc, Position] = {}
        duplicates: list[Problem] = []
        if node is not None:
            _index(node, (), lines, duplicates)
        if duplicates:
            raise RulesError(source, duplicates)
        return data, lines
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise RulesError(source, [_problem("(document)", (1, 1), "the rules file is empty")])
        lines = {}
        duplicates = []
        _index(node, (), lines, duplicates)
        if duplicates:
            raise RulesError(source, duplicates)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _at(mark) if mark is not None else None
        problem = _problem("(document)", where, f"YAML syntax: {exc.problem}")
        raise RulesError(source, [problem]) from None
    except yaml.YAMLError as exc:
        raise RulesError(source, [_problem("(document)", None, f"YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _at(mark: yaml.Mark) -> Position:
    return mark.line + 1, mark.column + 1


def _index(
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, Position],
    duplicates: list[Problem],
    stack: frozenset[int] = frozenset(),
) -> None:
    """Record where every mapping key and sequence item under ``node`` starts."""
    lines.setdefault(loc, _at(node.start_mark))
    if id(node) in stack:  # a recursive alias: its lines are recorded already
        return
    stack = stack | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*loc, key)
            if key in seen:
                duplicates.append(
                    _problem(format_loc(child), _at(key_node.start_mark), "duplicate key")
                )
            seen.add(key)
            lines[child] = _at(key_node.start_mark)
            _index(value_node, child, lines, duplicates, stack)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*loc, i)
            lines[child] = _at(item.start_mark)
            _index(item, child, lines, duplicates, stack)


def format_loc(loc: Loc) -> str:
    """``("visit_types", 2, "code")`` -> ``"visit_types[2].code"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def _line(loc: Loc, lines: dict[Loc, Position]) -> Position | None:
    """Where ``loc`` is, or its nearest ancestor present in the file."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _problems(exc: ValidationError, lines: dict[Loc, Position]) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = _data_loc(err["loc"])
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, RuleProblems):
            for sub, message in cause.problems:
                full = (*loc, *sub)
                out.append(_problem(format_loc(full), _line(full, lines), message))
            continue
        message = err["msg"].removeprefix("Value error, ")
        out.append(_problem(format_loc(loc), _line(loc, lines), message))
    return sorted(out, key=lambda p: (p.line or 0, p.column or 0, p.path))


def _data_loc(loc: tuple[Any, ...]) -> Loc:
    """Drop pydantic's validator markers (e.g. ``function-after[...]``) from a loc."""
    return tuple(p for p in loc if isinstance(p, int) or "[" not in str(p))


def replace_rules_file(
    path: Path, text: str, *, fmt: str, source: str = "<new rules>"
) -> RulesFile:
    """Replace the rules file at ``path`` by ``text``, which must validate.

    Validated first: an invalid text raises :class:`RulesError` and nothing is
    written. Then written beside the live file and renamed over it
    (:func:`os.replace`, atomic on one file system), so that a process reading the
    file sees either the old or the new one whole; every process serving from the
    file picks the new one up at its next change check
    (:meth:`RulesStore.reload_if_changed`). The text is written as given (comments
    stay); a ``.json`` file takes JSON only.
    """
    rules = parse_rules(text, source=source, fmt=fmt)
    if fmt != "json" and path.suffix.lower() == ".json":
        problem = _problem("(document)", None, f"the rules file {path.name} is JSON: send JSON")
        raise RulesError(source, [problem])
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    log.info("rules file %s replaced", path)
    return rules


class RulesStore:
    """The rules in force, reloaded when the file changes; safe to share across threads.

    ``reload_if_changed`` is cheap enough for every request: it stats the file at
    most once per ``check_interval`` seconds and parses only when the content
    hash changed. An invalid new file is logged and the previous rules stay.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = Path(path)
        self._interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_check = clock()
        self._stat = self._stat_key()
        data = self._read()
        self._digest = hashlib.sha256(data).hexdigest()
        self._current = self._parse(data)
        self.last_error: RulesError | None = None

    @property
    def current(self) -> RulesFile:
        return self._current

    def reload_if_changed(self) -> bool:
        """Load the file again if it changed; True when new rules are now in force."""
        now = self._clock()
        if now - self._last_check < self._interval:
            return False
        with self._lock:
            if now - self._last_check < self._interval:
                return False
            try:
                stat = self._stat_key()
                if stat == self._stat:
                    return False
                self._stat = stat
                try:
                    return self._load_if_new(force=False)
                except RulesError as exc:
                    log.error("rules file rejected, previous rules stay in force:\n%s", exc)
                    return False
            finally:
                # Marked checked only once the new rules are in force: a request arriving
                # while they load waits on the lock and then uses them, where it used to
                # see the check just made and answer with the old rules.
                self._last_check = now

    def reload(self) -> RulesFile:
        """Load the file now (signal or admin call); raises :class:`RulesError` if invalid."""
        with self._lock:
            self._stat = self._stat_key()
            self._last_check = self._clock()
            self._load_if_new(force=True)
            return self._current

    def apply(self, text: str, *, fmt: str, source: str = "<new rules>") -> RulesFile:
        """:func:`replace_rules_file` of this store's file, then in force here at once
        (raises :class:`RulesError`, nothing written, if ``text`` is invalid)."""
        with self._lock:
            replace_rules_file(self.path, text, fmt=fmt, source=source)
        return self.reload()

    def _load_if_new(self, *, force: bool) -> bool:
        data = self._read()
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest and not force:
            return False
        self._digest = digest
        try:
            rules = self._parse(data)
        except RulesError as exc:
            self.last_error = exc
            raise
        changed = rules != self._current
        self._current = rules
        self.last_error = None
        if changed:
            log.info("rules reloaded from %s", self.path)
        return changed

    def _stat_key(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            problem = _problem("(file)", None, f"cannot read: {exc}")
            raise RulesError(str(self.path), [problem]) from exc

    def _parse(self, data: bytes) -> RulesFile:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = _problem("(file)", None, f"not UTF-8: {exc}")
            raise RulesError(str(self.path), [problem]) from exc
        fmt = "json" if self.path.suffix.lower() == ".json" else "yaml"
        return parse_rules(text, source=str(self.path), fmt=fmt)
