"""wmproxy: a Python reimplementation of the gLite WMProxy job submission service.

Layers (each subpackage's docstring says what it owns):
``errors``/``domain``/``config`` (plain values), ``jdl`` (JDL on classad2), ``security``
(X.509, proxies, delegation crypto), ``store`` (SQLAlchemy), ``sandbox`` (job areas and
their HTTPS edge), ``services`` (the operations), ``soap`` (the Spyne port), ``execution``
(the worker), ``client`` and ``cli`` (the zeep-based user side).
"""

__version__ = "0.1.0"
