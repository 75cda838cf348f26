"""The built-in demo served by ``threadloom`` with no APP."""
