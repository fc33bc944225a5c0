"""Helpers that start real grid peers (myproxy-server, ...) for the tests."""
