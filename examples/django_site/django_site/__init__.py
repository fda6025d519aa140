"""A minimal Django site whose WSGI application is wrapped in ``MediaMiddleware``."""
