"""Named extensions of one kind (verifiers, and next providers and reward functions), found the
same way whoever wrote them.

A name resolves, in this order, to:

1. one registered in this process: the built-ins register themselves with the kind's decorator
   (e.g. ``@verifier``) when their module loads, and a team's own code does the same;
2. an entry point of the kind's group (e.g. ``rlhf_eval.verifiers``) in an installed package,
   loaded only when its name is first asked for, so a broken or heavy package costs nothing
   until a suite uses it::

       [project.entry-points."rlhf_eval.verifiers"]
       sentiment = "my_evals.verifiers:sentiment"

3. a ``module:attribute`` reference (``my_evals.verifiers:sentiment``), imported on first use.

As in inspect_ai (whose ``@scorer``/``@modelapi`` register on import and whose packages expose a
``_registry`` module through an entry point) and pytest (``pytest11``), a third party needs no
change to rlhf-eval. What the registry keeps for a name is whatever the kind's ``adapt`` makes of
the loaded object (for verifiers, a `rlhf_eval.verify.Verifier` with its option schema).
"""
from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown name, or an extension that cannot be loaded; the message is one line."""


def suggest(word: str, names) -> str:
    """"; did you mean 'x'?" for the closest of `names`, else "; known: a, b, c"."""
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(names)) or '(none)'}"


class Registry(Generic[T]):
    """Extensions of one `kind` ("verifier"), from registration, the entry-point `group`, or a
    ``module:attribute`` reference. `adapt(name, obj)` turns what was loaded into the kept entry
    (and raises `error` with one line when it cannot); `error` is the exception type raised for an
    unknown or broken name, so a kind keeps its own (e.g. `VerifierError`). `example` is the
    reference an error shows for one without a module or attribute (e.g.
    ``my_evals.verifiers:sentiment``; default ``my_evals.<group's last part>:my_<kind>``)."""

    def __init__(self, kind: str, group: str, adapt: Callable[[str, Any], T],
                 error: type[ValueError] = RegistryError, example: str | None = None) -> None:
        self.kind = kind
        self.group = group
        # The `module:attribute` a malformed reference's error shows (default from the group's name).
        self.example = example or f"my_evals.{group.rpartition('.')[2]}:my_{kind.replace(' ', '_')}"
        self._adapt = adapt
        self._error = error
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}  # name -> where its entry comes from (module:qualified name)
        self._entry_points: dict[str, list[EntryPoint]] | None = None

    def register(self, name: str, obj: Any, origin: str | None = None) -> T:
        """Keep `obj` under `name` (adapted). `origin` says where it comes from (default: `obj`'s
        module:qualified name; a decorator passes the function's). Raises `error` for a name that
        is not a non-empty string, or that is taken by something else: a team's extension never
        silently replaces a built-in or another team's (the same function registered again, as a
        module imported twice does, is not a conflict)."""
        if not isinstance(name, str) or not name.strip():
            raise self._error(f"a {self.kind} needs a name, got {name!r}")
        origin = origin or origin_of(obj)
        taken = self._origins.get(name)
        if taken is not None and taken != origin:
            raise self._error(f"{self.kind} {name!r} is already registered by {taken}; register {origin} under "
                              "another name")
        entry = self._entries[name] = self._adapt(name, obj)
        self._origins[name] = origin
        return entry

    def unregister(self, name: str) -> None:
        """Forget `name` (a test's, or a notebook's that is being rewritten); nothing if unknown."""
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    def get(self, name: str) -> T:
        """The entry for `name`. Raises `error`: unknown (with the closest known name), or an
        entry point / reference that cannot be imported or is not a valid extension."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        if not isinstance(name, str) or not name:
            raise self._error(f"{self.kind} must be a name, got {name!r}")
        points = self._installed().get(name)
        if points is not None and len(points) > 1:
            offered = ", ".join(sorted(f"{p.dist.name if p.dist else '?'} ({p.value})" for p in points))
            raise self._error(f"{self.kind} {name!r} is offered by several installed packages: {offered}; uninstall "
                              "one, or name the one you mean as module:attribute")
        point = points[0] if points else None
        if point is not None:
            return self.register(name, self._load(name, lambda: _load_point(point),
                                                  f"entry point {point.value!r} of {point.group}"))
        if ":" in name:
            module, _, attribute = name.partition(":")
            return self.register(name, self._load(name, lambda: _import(module, attribute, self.example),
                                                  "reference"))
        raise self._error(f"unknown {self.kind} {name!r}{suggest(name, self.names())}")

    def names(self) -> list[str]:
        """Every name that resolves without a reference: registered and installed."""
        return sorted(set(self._entries) | set(self._installed()))

    def registered(self) -> dict[str, T]:
        """The entries registered or loaded so far, by name (installed ones not yet asked for are not)."""
        return dict(self._entries)

    def installed_names(self) -> list[str]:
        """The names installed packages offer that nothing registered has taken."""
        return sorted(self._installed())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._installed())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def _installed(self) -> dict[str, list[EntryPoint]]:
        """Installed entry points by name. One with the name of a registered entry is not offered:
        a package cannot replace a built-in (README says so)."""
        if self._entry_points is None:  # read once: installing a package means a new process
            import importlib.metadata  # 40 ms, paid when a name is not a built-in's

            found: dict[str, list[EntryPoint]] = {}
            for point in importlib.metadata.entry_points(group=self.group):
                if point not in found.setdefault(point.name, []):  # a package on sys.path twice
                    found[point.name].append(point)
            self._entry_points = found
        return {name: points for name, points in self._entry_points.items() if name not in self._entries}

    def _load(self, name: str, load: Callable[[], Any], what: str) -> Any:
        try:
            return load()
        except Exception as exc:  # noqa: BLE001 - a third party's import error, in one line
            raise self._error(f"{self.kind} {name!r}: cannot load {what} "
                              f"({exception_line(exc)})") from None


def check_name(name: Any, kind: str, error: type[ValueError] = RegistryError) -> str:
    """`name`, when it can be registered: text without spaces or a colon (a colon makes a
    module:attribute reference); else raises `error`."""
    if not isinstance(name, str) or not name or any(c.isspace() or c == ":" for c in name):
        raise error(f"a {kind} name is text without spaces or ':' (which makes a module:attribute reference), "
                    f"got {name!r}")
    return name


def origin_of(obj: Any) -> str:
    """Where a registered thing comes from, as module:qualified name (the same across imports)."""
    run = getattr(obj, "func", obj)  # functools.partial
    module = getattr(run, "__module__", None) or type(run).__module__
    name = getattr(run, "__qualname__", None) or type(run).__qualname__
    return f"{module}:{name}"


def _load_point(point: EntryPoint) -> Any:
    if not point.pattern.match(point.value):  # importlib.metadata's own reading of "module:attr"
        raise ValueError("expected module:attribute")
    return point.load()


def _import(module: str, attribute: str, example: str) -> Any:
    if not module or not attribute:
        raise ValueError(f"expected module:attribute, e.g. {example}")
    obj = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def exception_line(exc: BaseException, width: int = 200) -> str:
    """`Type: first line of the message` (at most `width` characters of it), what an extension's
    own exception becomes in the one line that names the extension."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "no message"
    return f"{type(exc).__name__}: {first if len(first) <= width else first[:width - 1] + '…'}"
