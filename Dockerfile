# GPT Image Hub: one image, several processes that differ by command (deploy/bin/*):
#   deploy/bin/web (the default) · worker · housekeeping · migrate (once per release)
#
# BASE_IMAGE: an official Python slim image by default; any Debian-based image with python3
# (>= 3.11), its venv module and useradd works (the tests build from one made with mmdebstrap).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- builder: resolves the dependencies and installs their (binary or compiled) wheels into a
# virtualenv; nothing of the build — pip, its cache, build tools — reaches the runtime stage.
FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
# Only the dependency list first: this layer is rebuilt when pyproject.toml changes, not on
# every code change.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip uninstall --yes gpt-image-hub

# --- runtime: the virtualenv and the code, run as an unprivileged user.
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    HUB_BIN=/opt/venv/bin \
    HUB_VAR_DIR=/var/lib/hub \
    DJANGO_SETTINGS_MODULE=hub.settings \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --gid 10001 hub \
    && useradd --uid 10001 --gid hub --home-dir /app --no-create-home --shell /usr/sbin/nologin hub \
    && mkdir -p /var/lib/hub \
    && chown hub:hub /var/lib/hub
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY . .
# Static files are part of the image (WhiteNoise serves them); the code stays root-owned.
RUN DJANGO_SECRET_KEY=collectstatic-only python3 manage.py collectstatic --noinput -v0 \
    && python3 -m compileall -q hub apikeys billing generations workers accounts \
    && chown -R hub:hub /var/lib/hub
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 CMD ["/app/deploy/bin/healthcheck"]
CMD ["/app/deploy/bin/web"]
