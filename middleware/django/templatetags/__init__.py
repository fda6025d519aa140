"""Django template tag libraries of ``"resize_sidecar.middleware.django"``."""
