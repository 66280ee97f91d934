"""One registry type for every kind of component, and the plug-in hook that fills it.

Spaces, strategies, evaluators, objectives, schedulers, executors, scaling families and models are
each a `Registry`: a name maps to a factory (a class or a function) with a one-line description and
whatever else the rest of nasforge asks about that kind (a space's defaults, a model's published
settings). `create(name, **options)` checks the options against the factory's signature once, the
same way for every kind, so a typo in a config file gets the same one-line answer whichever
component it names.

Third-party packages add components through the ``nasforge.plugins`` entry-point group (the
mechanism pytest's ``pytest11`` group uses): an entry point names a module, imported for its
``@REGISTRY.register(...)`` decorators, or a callable, called with no arguments. Plug-ins are
loaded the first time any registry is read, so ``nasforge --help`` stays fast and a search sees
them with no change to nasforge.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Generic, TypeVar, overload

from nasforge.errors import ConfigError, NasforgeError, UnknownNameError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: the entry-point group third-party packages register their components under
PLUGIN_GROUP = "nasforge.plugins"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its factory, a description for listings, and kind-specific facts."""

    name: str
    target: Callable[..., T] | str  # "module:attribute" is imported on first use (optional dependencies)
    description: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def factory(self) -> Callable[..., T]:
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry(Mapping[str, Callable[..., T]]):
    """Name -> factory for one kind of component (``kind`` names it in messages and config fields).

    ``supplied`` are the factory parameters nasforge passes itself (a strategy's ``space`` and
    ``seed``, an executor's ``workers``): they are not user options.
    """

    def __init__(self, kind: str, supplied: tuple[str, ...] = ()):
        self.kind = kind
        self.supplied = supplied
        self._entries: dict[str, Entry[T]] = {}

    # -- registration ----------------------------------------------------------------------------
    @overload
    def register(
        self, name: str, target: None = None, *, description: str | None = None, overwrite: bool = False, **info: Any
    ) -> Callable[[F], F]: ...

    @overload
    def register(
        self,
        name: str,
        target: Callable[..., T] | str,
        *,
        description: str | None = None,
        overwrite: bool = False,
        **info: Any,
    ) -> Entry[T]: ...

    def register(
        self,
        name: str,
        target: Callable[..., T] | str | None = None,
        *,
        description: str | None = None,
        overwrite: bool = False,
        **info: Any,
    ) -> Any:
        """Register `target` under `name`; without a target, a decorator that registers what it wraps.

        A name already taken is refused unless ``overwrite=True``, so two plug-ins cannot silently
        replace each other (or a built-in).
        """
        if target is None:

            def decorate(obj: F) -> F:
                self.register(name, obj, description=description, overwrite=overwrite, **info)
                return obj

            return decorate
        if not isinstance(name, str) or not name:
            raise ConfigError(self.kind, f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not overwrite:
            raise ConfigError(
                self.kind, f"{self.kind} {name!r} is already registered (pass overwrite=True to replace it)"
            )
        if description is None:
            description = summary(unwrap(target)) if not isinstance(target, str) else ""
        entry = Entry(name, target, description, dict(info))
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    # -- lookup ----------------------------------------------------------------------------------
    def entry(self, name: Any, field: str | None = None) -> Entry[T]:
        """The entry of `name`; an unknown name raises `UnknownNameError` with the closest names."""
        load_plugins()
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        names = sorted(self._entries)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6) if isinstance(name, str) else []
        raise UnknownNameError(self.kind, name, close, allowed=names, field=field)

    def __getitem__(self, name: str) -> Callable[..., T]:
        return self.entry(name).factory

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        load_plugins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"

    def entries(self) -> list[Entry[T]]:
        """Every entry (plug-ins' included), sorted by name: what listings show."""
        load_plugins()
        return [self._entries[n] for n in sorted(self._entries)]

    # -- options ---------------------------------------------------------------------------------
    def parameters(self, name: str) -> dict[str, inspect.Parameter] | None:
        """The factory's named parameters a user may set; None where its signature does not say
        (a plain ``**options`` function): such options are passed through unchecked."""
        return factory_parameters(self[name], self.supplied)

    def options(self, name: str) -> list[str]:
        """The option names `create(name, ...)` accepts (empty where they are not known)."""
        return list(self.parameters(name) or ())

    def check_options(
        self, name: str, options: Mapping[str, Any], field: str | None = None, complete: bool = True
    ) -> None:
        """Refuse unknown options, and missing ones where `options` is `complete` (nothing is added
        to them later), in one line naming the option and the allowed ones."""
        params = self.parameters(name)
        if params is None:
            return
        prefix = field or self.kind
        unknown = sorted(set(options) - set(params) - set(self.supplied))
        if unknown:
            raise ConfigError(
                f"{prefix}.{unknown[0]}", f"unknown option for {self.kind} {name!r}", list(params) or "none"
            )
        missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in options]
        if missing and complete:
            raise ConfigError(f"{prefix}.{missing[0]}", f"is required for {self.kind} {name!r}")

    def create(self, name: str, /, *args: Any, field: str | None = None, **options: Any) -> T:
        """Build `name` with `options` (checked) after the supplied positional `args`."""
        factory = self.entry(name, field).factory
        self.check_options(name, options, field)
        return factory(*args, **options)


def unwrap(factory: Any) -> Any:
    """The class or function under any ``functools.partial`` layers."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory


def summary(obj: Any) -> str:
    """The first sentence of an object's docstring, on one line: what listings show."""
    doc = inspect.getdoc(obj) or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    end = re.search(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\.\s+(?=[A-Z])", paragraph)
    return paragraph if end is None else paragraph[: end.start() + 1]


def factory_parameters(
    factory: Callable[..., Any], supplied: tuple[str, ...] = ()
) -> dict[str, inspect.Parameter] | None:
    """Named keyword parameters of a class or function, less `supplied`.

    A constructor that passes ``**options`` on to its base class takes the base class's parameters
    too; keywords a ``functools.partial`` already binds are not options.
    """
    bound: set[str] = set()
    positional = 0
    while isinstance(factory, functools.partial):
        bound |= set(factory.keywords)
        positional += len(factory.args)
        factory = factory.func
    functions = (
        [vars(k)["__init__"] for k in factory.__mro__ if "__init__" in vars(k)]
        if inspect.isclass(factory)
        else [factory]
    )
    out: dict[str, inspect.Parameter] = {}
    for function in functions:
        params = inspect.signature(function).parameters
        named = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if function is functions[0]:
            bound |= set(named[:positional])  # filled by the partial's positional arguments
        for name in named:
            if name not in supplied and name not in bound:
                out.setdefault(name, params[name])
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return out
    return None if not inspect.isclass(factory) else out


# -- plug-ins ------------------------------------------------------------------------------------------
_plugins_lock = threading.RLock()
_plugins_loaded = False


class PluginError(NasforgeError, RuntimeError):
    """A plug-in package failed to load; the message names its entry point."""


def load_plugins() -> None:
    """Import every ``nasforge.plugins`` entry point once (later calls return at once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    with _plugins_lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True  # set first: a plug-in's own registrations read the registries
        from importlib.metadata import entry_points

        for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
            try:
                loaded = point.load()
                if callable(loaded) and not isinstance(loaded, ModuleType):
                    loaded()
            except NasforgeError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken plug-in is named, not a traceback
                raise PluginError(
                    f"plug-in {point.name!r} ({point.value}) failed to load: {type(exc).__name__}: {exc}"
                ) from exc


def describe_component(obj: Any) -> Any:
    """A JSON-able description of a component: its own `config()` where it has one, else its name and
    class (and `options()`), so runs built from objects, plug-ins' duck-typed ones included, store
    what they ran with."""
    if obj is None:
        return None
    config = getattr(obj, "config", None)
    if callable(config):
        try:
            value = config()
            if isinstance(value, Mapping):
                return dict(value)
        except Exception:  # noqa: BLE001 - describing must never fail a run
            pass
    options = getattr(obj, "options", None)
    description: dict[str, Any] = {
        "name": getattr(obj, "name", None) or type(obj).__name__,
        "class": f"{type(obj).__module__}.{type(obj).__qualname__}",
    }
    if callable(options):
        try:
            description["options"] = dict(options())
        except Exception:  # noqa: BLE001
            pass
    if callable(obj) and hasattr(obj, "__qualname__"):  # a plain function
        description = {"name": obj.__qualname__, "class": f"{obj.__module__}.{obj.__qualname__}"}
    return description


__all__ = [
    "Entry",
    "PLUGIN_GROUP",
    "PluginError",
    "Registry",
    "describe_component",
    "factory_parameters",
    "load_plugins",
]
