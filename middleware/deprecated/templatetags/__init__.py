"""``{% load media_urls %}`` for projects that still have ``"middleware"`` in ``INSTALLED_APPS``."""
