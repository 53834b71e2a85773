"""Function tools that ship with Code Evolver (referenced from the default config.yaml)."""

from __future__ import annotations

import asyncio


async def delay(text: str, seconds: float | str = 1.0) -> str:
    """Waits `params.seconds`, then returns its input: for trying out parallelism and timeouts."""
    await asyncio.sleep(float(seconds))
    return text
