"""``mailwarden serve``: run policyd, milter, lmtpd and the REST API (``mailwarden api``,
at ``[api] listen``) under one supervisor.

Each daemon runs in its own process, started as ``python -m mailwarden --config PATH
<daemon> --metrics 127.0.0.1:<port>`` (``children``). The supervisor (``supervisor``)
restarts a daemon that exits, waiting 1 s, 2 s, 4 s ... up to 60 s between attempts
(the wait resets once a daemon has stayed up for a minute), and stops them all on
SIGTERM/SIGINT: SIGTERM to every child, then SIGKILL to any still alive after the
deadline. One Prometheus endpoint for the host (``endpoint``, at ``[metrics] listen``)
serves every daemon's metrics (each counts into its own multi-process directory, the
skeleton's ``daemon.metrics``) with the supervisor's own
``mailwarden_serve_up{daemon}`` and ``mailwarden_serve_restarts_total{daemon}``.

Wiring lives in ``main``: the configuration is loaded and checked, the metrics port is
bound (a port in use stops here, with one line) before any daemon starts. Without
``--foreground`` the process detaches and logs to ``--log-file``.
"""
