"""The daemon skeleton every mailwarden server uses (Postfix's ``master``/``*_server``
in miniature): ``listen`` (addresses and listening sockets), ``supervisor`` (pre-forked
worker processes), ``logging`` (one log format), ``readiness`` (sd_notify, reload
signal), ``metrics`` (Prometheus across processes), ``options`` (the daemons' shared
command-line options). Nothing here imports a daemon package; they import this.
"""
