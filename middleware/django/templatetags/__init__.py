"""Django template tag libraries; add ``"middleware"`` to ``INSTALLED_APPS`` to load them."""
