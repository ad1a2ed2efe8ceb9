"""Command line: a thin layer over :mod:`compliance.api`.

Every command parses its arguments, calls the API and prints. Each module in this package
registers its commands on :data:`compliance.cli.app.app`; all modules are imported here, so a
new command group is a new module, with no list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil

from compliance.cli.app import app, main

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "app" and not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]
