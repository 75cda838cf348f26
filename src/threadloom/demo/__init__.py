"""The built-in demo served by ``threadloom`` with no APP.

``runner`` starts two servers under one model: the page (``web`` for HTTP, ``live`` for the
WebSockets, ``static/`` for the HTML, CSS and JavaScript) and the tutorial's TCP hello
(``hello``).
"""
