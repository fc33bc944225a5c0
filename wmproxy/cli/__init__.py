"""The ``wmproxy`` command: gLite-style job commands on top of :mod:`wmproxy.client`.

One module per verb (delegate, submit, status, cancel, output, listmatch, perusal,
info, templates); they parse options,
call the client and print in the gLite UI formats (``peers.md`` §9.1) that scripts
parse. Shared pieces: :mod:`.common` (options, credentials, errors), :mod:`.render`
(text), :mod:`.jobids` (the ``-o``/``-i`` job-id file), :mod:`.sandbox` (local ISB files),
:mod:`.compound` (collections, DAGs and parametric jobs on the client side).
"""
