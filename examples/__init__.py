"""Example applications wrapped in ``MediaMiddleware``: Flask, Django and the demo gallery (plain WSGI)."""
