"""The C extensions, optional: without a compiler threadloom installs and runs in pure Python.

Everything else about the package lives in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "threadloom.protocols.http1._speedups",
            sources=["src/threadloom/protocols/http1/_speedups.c"],
            optional=True,  # a failed build is a warning; threadloom then runs pure Python
            extra_compile_args=["-O2"],
        ),
        Extension(
            "threadloom.interfaces._wsgi",
            sources=["src/threadloom/interfaces/_wsgi.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
