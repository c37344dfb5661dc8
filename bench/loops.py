"""Which event loop each side of a measurement runs.

The harness's own processes (the built-in load generator, the sink) use uvloop when it is
importable: they are instruments and should cost as little as they can. The limits model the
project's stack, so they use uvloop only when the project itself depends on it; otherwise a
limit would be measured on a faster loop than the service it is compared with.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import re
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

PROJECT: Final = "data-pusher"


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def stack_uses_uvloop() -> bool:
    """True when the installed project declares uvloop among its (non-extra) dependencies."""
    try:
        requirements = importlib.metadata.requires(PROJECT) or []
    except importlib.metadata.PackageNotFoundError:
        return False
    for requirement in requirements:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if name == "uvloop" and "extra ==" not in requirement:
            return True
    return False


def use_uvloop(wanted: bool) -> bool:
    """Install uvloop's policy for this process if ``wanted`` and possible; says if it did."""
    if not (wanted and uvloop_available()):
        return False
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(main: Coroutine[Any, Any, T], *, fast: bool) -> T:
    """Run ``main`` to completion, on uvloop when ``fast`` and it is available."""
    use_uvloop(fast)
    return asyncio.run(main)
