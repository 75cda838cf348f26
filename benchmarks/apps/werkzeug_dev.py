"""flask-dev: werkzeug's development server, the one ``flask run`` and ``app.run()`` start.

    python werkzeug_dev.py MODULE PORT

It serves ``MODULE.app`` like every other server in the suite, so it runs each workload's app
rather than an app of its own. Its per-request log is silenced: no other server logs requests.
"""

import importlib
import logging
import sys

from werkzeug.serving import run_simple


def main() -> None:
    """Serve with threads, as ``app.run()`` does by default."""
    module, port = sys.argv[1], int(sys.argv[2])
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run_simple("127.0.0.1", port, importlib.import_module(module).app, threaded=True)


if __name__ == "__main__":
    main()
