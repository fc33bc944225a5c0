"""``python -m wmproxy.monitoring``: the ``wmproxy-metrics`` process."""

from wmproxy.monitoring.server import main

main()
