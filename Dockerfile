# The resize sidecar: gunicorn (as PID 1, through `resize-sidecar serve`) with libvips from pyvips-binary.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --system --uid 10001 --home-dir /srv/resize-sidecar --create-home sidecar
WORKDIR /srv/resize-sidecar

COPY pyproject.toml README.md ./
COPY resize_sidecar ./resize_sidecar
COPY middleware ./middleware
COPY deploy/nginx ./deploy/nginx
RUN pip install ".[sidecar]"

USER sidecar
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["resize-sidecar", "serve", "--bind", "0.0.0.0:8000", "--workers", "2"]
