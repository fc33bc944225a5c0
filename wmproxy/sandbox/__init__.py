"""Job sandboxes: the per-job areas on disk and their HTTPS edge.

* :mod:`wmproxy.sandbox.storage` owns the bytes: it is the only code that creates,
  reads, writes or removes job areas (``<root>/SandboxDir/<2ch>/<job dir>/{input,output}``,
  ``wmproxy-behaviour.md`` §4.1) and confines every client-supplied path to them.
* :mod:`wmproxy.sandbox.confined` reads what a job left in its work dir without trusting
  it: no symbolic link followed, no hard link, nothing outside the work dir.
* :mod:`wmproxy.sandbox.http` is the WSGI application gLite clients (``htcp``) talk to
  for input sandbox uploads and output sandbox downloads (§4.2, ``peers.md`` §7).

The rules (who may upload, how much, when output may be fetched) live in
``wmproxy.services.sandboxes``; the HTTP edge receives them as injected callables.
"""
