"""Make Gradio refuse, in an app served with ``gr.mount_gradio_app``, every file reference that was not uploaded here.

Before a handler runs, Gradio moves the files named in its inputs into its cache, and checks that each one was
uploaded to this server (lies in its upload folder): ``gradio.processing_utils._check_allowed``. That check returns
early unless ``blocks.has_launched``, which only ``Blocks.launch()`` sets. ``mount_gradio_app`` (how the app is served,
beside its REST endpoint) never launches, so any client could post ``{"path": "/any/server/file", "meta":
{"_type": "gradio.FileData"}}`` to the queue and have that file read, or copied into the cache and served.

:func:`refuse_files_not_uploaded` sets the flag the check reads, then proves the check now refuses a file outside
the upload folder. If Gradio's code no longer looks like that (renamed, or gated on something else), it changes
nothing and says so: textclf's own callbacks still accept only files inside the upload folder
(:func:`textclf.safety.check_uploaded`), and ``tests/test_security.py`` probes every handler either way.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def refuse_files_not_uploaded(demo: Any) -> bool:
    """True when Gradio now refuses, for ``demo``'s handlers, files that were not uploaded to this server."""
    try:
        from gradio import processing_utils
        from gradio.context import LocalContext
        from gradio.exceptions import InvalidPathError

        check = processing_utils._check_allowed
        stock = "has_launched" in inspect.getsource(check)
    except (ImportError, AttributeError, OSError, TypeError):
        stock = False
    if not stock:
        logger.warning("textclf: this gradio's upload check is not the one textclf knows; left as it is "
                       "(textclf's callbacks still open uploaded files only)")
        return False
    demo.has_launched = True  # what launch() sets; mount_gradio_app serves the same Blocks without it
    with tempfile.NamedTemporaryFile(prefix="textclf-probe-", suffix=".csv") as probe:
        token = LocalContext.blocks.set(demo)
        try:
            check(Path(probe.name), True)  # the preprocessing call: only uploads are allowed
        except InvalidPathError:
            return True
        finally:
            LocalContext.blocks.reset(token)
    logger.warning("textclf: gradio still accepts files outside its upload folder in this app; "
                   "textclf's callbacks open uploaded files only")
    return False
