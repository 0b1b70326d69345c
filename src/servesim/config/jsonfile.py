"""Reading a user's JSON file with the one-line errors every loader gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servesim.config.compressed import read_bytes
from servesim.errors import ConfigError


def read_json(path: Path, where: str) -> Any:
    """The parsed contents of a JSON file; ConfigError naming `where` if it cannot be read or parsed."""
    try:
        return json.loads(read_bytes(path, ConfigError, "JSON file").decode("utf-8"))  # `.gz` files are gunzipped
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
