"""The operations of the service, free of SOAP, HTTP and WSGI.

Each public function takes a :class:`~wmproxy.services.runtime.Runtime` (settings and
collaborators built once per process), the calling :class:`~wmproxy.domain.Principal`
and plain arguments; it opens its own unit of work, so that the database rows and the
files it writes succeed or fail together, and raises ``wmproxy.errors`` exceptions.
"""
