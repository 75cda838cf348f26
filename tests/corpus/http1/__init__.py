"""Raw HTTP/1.1 requests as data: ``valid/`` and ``invalid/`` ``*.http`` files (see loader)."""
