"""wmproxy: a Python reimplementation of the gLite WMProxy job submission service.

Layers (each subpackage's docstring says what it owns):
``errors``/``domain``/``config`` (plain values), ``jdl`` (JDL on classad2), ``security``
(X.509, proxies, delegation crypto), ``store`` (SQLAlchemy), ``sandbox`` (job areas and
their HTTPS edge), ``services`` (the operations), ``soap`` (the Spyne port), ``execution``
(the worker), ``client`` and ``cli`` (the zeep-based user side).
"""


#: As :data:`typing.TYPE_CHECKING` (mypy takes the name as true), without importing typing: the job
#: wrapper imports this package and nothing of typing otherwise (about 3 ms of CPU a job).
TYPE_CHECKING = False

#: The installed distribution's version (setuptools-scm derives it from git when the wheel or the
#: editable install is built: ``0.1.devN+g<hash>``); :data:`FALLBACK_VERSION` when no wmproxy
#: distribution is installed (a bare source tree). Looked up on first use, not at import: the job
#: wrapper and every command import this package, and importlib.metadata costs tens of milliseconds.
__version__: str

#: pyproject.toml's ``[tool.setuptools_scm] fallback_version``: below every version built from git.
FALLBACK_VERSION = "0.0"

if not TYPE_CHECKING:

    def __getattr__(name):
        if name != "__version__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import metadata

        try:
            version = metadata.version("wmproxy")
        except metadata.PackageNotFoundError:
            version = FALLBACK_VERSION
        globals()["__version__"] = version
        return version
