"""The public surface of tether.toolkit: curated, sorted, documented, frozen records."""

from __future__ import annotations

import dataclasses
import inspect

import tether.toolkit


def test_all_is_sorted_and_resolves() -> None:
    names = tether.toolkit.__all__
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in names:
        assert hasattr(tether.toolkit, name), name


def test_every_public_symbol_is_documented() -> None:
    for name in tether.toolkit.__all__:
        value = getattr(tether.toolkit, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name
            for attr, member in vars(value).items():
                if not attr.startswith("_") and callable(member):
                    assert inspect.getdoc(member), f"{name}.{attr}"


def test_public_dataclasses_are_frozen_and_keyword_only() -> None:
    for name in tether.toolkit.__all__:
        value = getattr(tether.toolkit, name)
        if inspect.isclass(value) and dataclasses.is_dataclass(value):
            assert all(f.kw_only for f in dataclasses.fields(value)), name
            assert value.__dataclass_params__.frozen, name  # type: ignore[attr-defined]
