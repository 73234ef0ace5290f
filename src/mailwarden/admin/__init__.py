"""The admin CLI: ``mailwarden <family> <verb> ...``; one module per command family."""
