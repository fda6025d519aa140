# The resize sidecar: gunicorn (as PID 1, through `resize-sidecar serve`) with libvips from pyvips-binary.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --system --uid 10001 --home-dir /srv/resize-sidecar --create-home sidecar
WORKDIR /srv/resize-sidecar

# jemalloc hands libvips' large, short-lived buffers back to the system where glibc's malloc fragments memory. Its
# folder is named after the architecture (x86_64-linux-gnu, aarch64-linux-gnu): one link gives LD_PRELOAD a fixed
# path, and the build fails if the library is not where the link points.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/lib/*-linux-gnu/libjemalloc.so.2 /usr/local/lib/libjemalloc.so.2 \
    && test -e /usr/local/lib/libjemalloc.so.2
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2

COPY pyproject.toml README.md ./
COPY resize_sidecar ./resize_sidecar
COPY middleware ./middleware
COPY deploy/nginx ./deploy/nginx
RUN pip install ".[sidecar]"

USER sidecar
# For nginx on the container network only: gunicorn reads each request in the thread that answers it, so a few slow
# clients would hold every thread. Publish nginx's port (deploy/compose.yaml), never this one.
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["resize-sidecar", "serve", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4"]
