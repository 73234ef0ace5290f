"""mailwarden: virtual mail hosting around a stock Postfix (or Exim) and Dovecot (or Courier).

The package is organised as a pure decision core (``core/``), one SQL store
(``store/``), and thin adapters per protocol (``policyd/``, ``milter/``,
``lmtpd/``, ``pipe/``) around the delivery core (``delivery/``), plus the admin CLI
(``admin/``). See docs/architecture.md and DESIGN for the seams.
"""

__version__ = "0.1.0"
