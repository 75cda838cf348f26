"""flask: a Flask app whose ``/json`` route returns a dict (Flask serialises it)."""

from typing import Any

from flask import Flask
from payloads import JSON_DOC

app = Flask(__name__)


@app.get("/json")
def json_view() -> dict[str, Any]:
    """The shortest JSON view Flask allows: routing, request context and jsonify per request."""
    return JSON_DOC
