"""The sidecar's WSGI app with :mod:`proposals` applied: ``gunicorn ... --pythonpath bench proposal_app:app``."""

from __future__ import annotations

import proposals

from resize_sidecar.app import make_app

proposals.apply()
app = make_app()
