"""Proxy renewal: getting fresh proxies for long jobs from a MyProxy server.

``myproxy`` holds the MyProxy protocol client (renewal as an authorized renewer service,
``peers.md`` §5.3) and its typed errors. The renewal worker and its schedule build on it.
"""
