"""An app module whose import kills the process: the bench must report the server as failed."""

import os

os._exit(3)
