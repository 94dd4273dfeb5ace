"""The one result protocol: what a job returns to be rendered and turned into an exit code.

A job's result is a `Report`: `verdict` says what the run found (`errors.exit_code_for` maps it to
the exit code), `to_document()` gives its fields as plain data (the JSON document's body, and the
source of the human formats). `cli/render.py: finish_report` renders any `Report` the same way,
so no result class writes its own JSON shape or picks an exit code.
"""

from __future__ import annotations

from typing import Any, Protocol

from orion_etl.errors import Verdict


class Report(Protocol):
    """A job's result: what it found and its fields as plain data."""

    @property
    def verdict(self) -> Verdict: ...

    def to_document(self) -> dict[str, Any]: ...
