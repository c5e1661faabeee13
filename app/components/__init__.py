"""The one place a component is plugged in."""

from __future__ import annotations

from app.components.generator import component as generator_component
from app.components.test_suite import component as test_suite_component
from app.core.context import Component

COMPONENTS: tuple[Component, ...] = (test_suite_component.component, generator_component.component)
