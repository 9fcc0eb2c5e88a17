"""The public surface: __all__ matches each namespace, and the seed imports work."""

from __future__ import annotations

import types

import pytest

import asyncprov
import asyncprov.providers
import asyncprov.ray
import asyncprov.testing


@pytest.mark.parametrize(
    "module", [asyncprov, asyncprov.providers, asyncprov.ray, asyncprov.testing]
)
def test_all_matches_namespace(module: types.ModuleType) -> None:
    """__all__ is sorted and lists exactly the public names the module exposes."""
    exported = module.__all__
    assert exported == sorted(exported)
    for name in exported:
        assert getattr(module, name) is not None
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "TYPE_CHECKING", "Any"}
    }
    assert public <= set(exported) | {"__version__"}


def test_every_error_is_exported() -> None:
    """Every exception class of the errors module is reachable from the top package."""
    from asyncprov import _errors

    for name in _errors.__all__:
        value = getattr(_errors, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert getattr(asyncprov, name) is value


def test_seed_imports() -> None:
    """The names the seed snippets import exist."""
    from asyncprov import AsyncClient, Client
    from asyncprov.providers import OpenaiChat

    assert AsyncClient and Client and OpenaiChat.name == "OpenaiChat"
