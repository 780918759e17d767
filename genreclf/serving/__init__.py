"""Serving: the one pyfunc of every family, its request contract, batch scoring and the REST guard."""
