"""The one place a component is plugged in: migrations, settings, health and tests iterate here.

A third component is one package (models, schemas, store, service, router, component.py), one
line in `COMPONENTS`, and one folder of revisions under migrations/versions/<name>.
"""

from __future__ import annotations

from app.components.generator import component as generator_component
from app.components.test_suite import component as test_suite_component
from app.core.context import Component

COMPONENTS: tuple[Component, ...] = (test_suite_component.component, generator_component.component)


def names() -> tuple[str, ...]:
    """Return the names of the plugged-in components, in order."""
    return tuple(c.name for c in COMPONENTS)


def get(name: str) -> Component:
    """Return a plugged-in component by name (KeyError when none has that name)."""
    for comp in COMPONENTS:
        if comp.name == name:
            return comp
    raise KeyError(name)
