from typing import Any

def environ(
    template: dict[str, Any], request: Any, body: Any, client: Any, keys: dict[bytes, str], /
) -> dict[str, Any]: ...
