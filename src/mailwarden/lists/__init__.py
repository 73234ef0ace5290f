"""Mailing lists run by mlmmj: the list directory mailwarden keeps in step with the schema
(``mlmmj``). The rows are ``store/lists.py``'s, the operations ``ops/lists.py``'s."""
