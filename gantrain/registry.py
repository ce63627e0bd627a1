"""Registries: every buildable part is looked up by the name a config gives it.

One registry per kind of part. A part registers itself with a decorator in the
module that defines it; the package of each kind imports all its modules, so a
new part is one new file. Users register their own parts from their own modules
and list those modules under ``plugins`` in the config.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from gantrain.errors import UserError


class Registry:
    """Maps names to constructors of one kind of part (networks, losses, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@NETWORKS.register("dcgan_generator")``."""

        def add(constructor: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries and self._entries[name] is not constructor:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = constructor
            return constructor

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise UserError(unknown_choice(self.kind, name, self.names()))
        return self._entries[name]

    def takes(self, name: str, option: str) -> bool:
        """Whether the part registered as ``name`` accepts ``option`` as a keyword."""
        params = inspect.signature(self.get(name)).parameters
        return option in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def build(self, name: str, options: Mapping[str, Any] | None = None, config_key: str | None = None,
              **context: Any) -> Any:
        """Call the constructor registered as ``name``.

        ``options`` come from the user's config: each must be a parameter of the
        constructor, or the user gets a one-line error naming the accepted ones.
        ``config_key`` is where those options sit in the config (``optim.schedule``): given, an option
        that belongs to another registered part (left behind when a preset's ``name`` was switched on
        the command line) gets an error naming that part and the override that drops it.
        ``context`` is what gantrain knows (data shape, latent size, device...):
        each item is passed only if the constructor asks for it.
        """
        constructor = self.get(name)
        options = dict(options or {})
        params = inspect.signature(constructor).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        accepted = [p for p in params if p not in context and p != "self"]
        if not takes_any:
            # A null option left behind by another part (model.generator.blocks after switching the generator's
            # name) means "that part's default": dropped, as Hydra's '~key' cannot delete a key that is null.
            options = {key: value for key, value in options.items() if value is not None or key in params
                       or not any(self.takes(other, key) for other in self if other != name)}
            unknown = [key for key in options if key not in params or key in context]
            owner = next((other for other in self if other != name and self.takes(other, unknown[0])), None) \
                if unknown and config_key and unknown[0] not in context else None
            if owner:
                raise UserError(f"{config_key}.{unknown[0]} is an option of the {owner} {self.kind}, not of {name}; "
                                f"drop it with '~{config_key}.{unknown[0]}'")
            if unknown:
                raise UserError(
                    f"{self.kind} '{name}' has no option '{unknown[0]}'; "
                    f"its options are: {', '.join(accepted) or '(none)'}"
                )
        wanted = {k: v for k, v in context.items() if k in params or takes_any}
        return constructor(**wanted, **options)


def unknown_choice(kind: str, name: object, choices: list[str]) -> str:
    """The one-line message for a name that is not among the choices."""
    message = f"unknown {kind} '{name}'; choose from: {', '.join(choices) or '(none registered)'}"
    close = difflib.get_close_matches(str(name), choices, n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message


def import_submodules(package_name: str) -> None:
    """Import every module of a package so that their ``@register`` lines run."""
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package_name}.{module.name}")


def import_plugins(modules: list[str] | None) -> None:
    """Import the user's own modules (``plugins=[my_pkg.my_gan]``) so they can register parts."""
    for name in modules or []:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise UserError(f"cannot import plugin module '{name}': {error}") from error


NETWORKS = Registry("network")
LOSSES = Registry("loss")
DATASETS = Registry("dataset")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("lr schedule")
RECIPES = Registry("recipe")
REGULARIZERS = Registry("regularizer")
METRICS = Registry("metric")
WEIGHT_LAYOUTS = Registry("weight layout")  # published key layouts a network can load (gantrain/nets/*_layouts.py)
AUGMENTATIONS = Registry("augmentation")  # what a discriminator sees (gantrain/augment/)


def load_builtin_parts() -> None:
    """Register everything gantrain ships (idempotent)."""
    for package in ("nets", "losses", "regularizers", "data", "optim", "recipes", "metrics", "augment"):
        import_submodules(f"gantrain.{package}")
