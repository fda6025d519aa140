"""Django integration: put ``"resize_sidecar.middleware.django"`` in ``INSTALLED_APPS``.

- :mod:`.templatetags.media_urls`: ``{% load media_urls %}`` and its tags, which take a ``FieldFile``, a media URL
  or a storage key;
- :mod:`.conf`: the sidecar's settings from Django's (``MEDIA_URL``, ``MEDIA_ROOT``, the default storage's bucket
  and ``location``) under any ``RESIZE_SIDECAR_*`` given explicitly;
- :mod:`.checks`: ``manage.py check`` messages for settings that disagree;
- :mod:`.wsgi`: ``wrap(get_wsgi_application())`` for ``wsgi.py``;
- :mod:`.jinja2`: an environment factory for Django's Jinja2 template backend;
- :mod:`.storage`: ``MediaAPIStorage``, which stores uploads through the sidecar's media API (upright, no GPS).

Nothing is imported here, so that naming the package costs nothing outside a Django project.
"""
