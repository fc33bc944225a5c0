"""A gSOAP C++ client generated from the REFERENCE WSDL, as a strict wire-compatibility probe.

Why: gSOAP clients (the gLite UI's wmproxy-api-cpp, gridsite's htproxyput, davix) silently
ignore reply elements whose name or namespace differs from what the WSDL says (a qualified
``<tns:version>`` reads as an empty string). zeep is lenient; this client is not.

Pieces:

* ``typemap.dat``: wsdl2h prefixes (``ns1`` = WMProxy, ``deleg1``/``deleg2`` = the gridsite
  delegation ports, ``jsdl``/``jsdlposix``), so the C++ names are stable.
* ``wmpclient.cpp``: one operation per invocation,
  ``wmpclient [--dump] ENDPOINT PROXYFILE CADIR OPERATION [ARGS]``; TLS with the proxy file
  (cert + key + chain) as client credential, the server verified against CADIR only. Prints
  ``key=value`` lines (newlines escaped as ``\\n``) for every returned field, also when empty;
  exit 2 on a SOAP fault with the typed ``<detail>`` element gSOAP deserialized
  (``fault.element``, ``fault.ErrorCode``, ``fault.msg``...). ``--dump`` copies the raw HTTP
  exchange to stderr. Operations: see ``usage()`` in the source.
* ``build.py``: ``build()`` runs wsdl2h on the reference WSDL (``/work/shared/reference/wsdl``,
  copied to a temp dir only) and ``soapcpp2 -j -C``, compiles against libgsoapssl++ and caches
  the result in ``/tmp/wmproxy-gsoap-<hash of inputs>`` (about 6 s cold, instant warm).
  Raises ``ToolchainMissing`` when gsoap/libgsoap-dev/g++ are absent.

The tests are ``tests/integration/test_gsoap_client.py``.
"""
