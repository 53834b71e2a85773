"""Files that ship with Code Evolver: the default config.yaml and the prompt templates.

An installed wheel carries them in ``code_evolver/_data`` (see pyproject's force-include); a
source checkout or editable install reads them from the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The folder holding the packaged ``config.yaml`` and ``prompts/``."""
    packaged = _PACKAGE / "_data"
    if (packaged / "config.yaml").is_file():
        return packaged
    return _PACKAGE.parent


def default_config_path() -> Path:
    return data_dir() / "config.yaml"
