"""Proxy renewal: getting fresh proxies for long jobs from a MyProxy server.

``myproxy`` holds the MyProxy protocol client (renewal as an authorized renewer service,
``peers.md`` §5.3) and its typed errors; ``worker`` the renewal worker loop (schedule,
claiming, threads, backoff) and ``__main__`` its ``wmproxy-renewal`` command. What to renew,
when, and what happens to jobs at expiry is decided in ``wmproxy.services.renewal``.
"""
