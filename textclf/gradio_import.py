"""Import gradio without its stub regeneration, which is about half of ``import gradio`` and does nothing for a user.

Every gradio component class, as it is defined, re-reads its own source file, parses it (``ast``) and rewrites the
``.pyi`` type stub beside it (``gradio.component_meta.create_or_modify_pyi``, 81 classes in gradio 6.31): a tool for
gradio's own developers that runs in every process that imports gradio. Measured on the 2-core development machine
(cProfile of ``import gradio``): 4.3 s of 8.6 s profiled; ``bench/startup.py`` shows the effect on the app's start-up.

The stubs only serve type checkers, and gradio ships them already written, so skipping their regeneration changes
nothing at run time. If a gradio release renames the function, this does nothing.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

_MODULE = "gradio.component_meta"
_FUNCTION = "create_or_modify_pyi"


def _no_stub(*args: Any, **kwargs: Any) -> None:
    return None


class _SkipStubs(importlib.abc.MetaPathFinder):
    """Finds ``gradio.component_meta`` like the normal path finder, and replaces the function once its body has run."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return None  # not a plain source/bytecode module: leave it to the normal import
        exec_module = loader.exec_module

        def exec_then_skip(module: ModuleType) -> None:
            exec_module(module)
            if hasattr(module, _FUNCTION):
                setattr(module, _FUNCTION, _no_stub)

        loader.exec_module = exec_then_skip  # type: ignore[method-assign]  # this spec's own loader instance only
        return spec


@contextlib.contextmanager
def without_stub_regeneration() -> Iterator[None]:
    """Within the block, the first import of gradio skips the stub regeneration; gradio already imported: no effect."""
    if _MODULE in sys.modules:
        yield
        return
    finder = _SkipStubs()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
