# syntax=docker/dockerfile:1
#
# One image for every scrm service; the command picks the service:
#   docker run scrm ingest | trigger-engine | sender | segmenter | reporting
#   docker run scrm python -m whatsapp_sim.main        (the dev-only WhatsApp Cloud API simulator)
#
# Build:  docker build -t scrm:dev .
# UV_VERSION must stay equal to UV_VERSION in the Makefile (tests/unit/deploy checks it).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------
# manifests: only the files that decide the third-party dependencies (root + member pyproject.toml,
# uv.lock). Copied from here, the dependency layer below is rebuilt only when one of them changes,
# not on every source edit, and new workspace members are picked up without touching this file.
# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -name pyproject.toml ! -name uv.lock -delete \
    && find . -depth -type d -empty -delete

# ---------------------------------------------------------------------------------------------------
# build: uv (from PyPI, pinned) syncs the whole workspace, without dev dependencies, into /app/.venv
# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install "uv==${UV_VERSION}"
WORKDIR /app

# 1) third-party dependencies only (the cacheable layer)
COPY --from=manifests /src/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-install-workspace

# 2) the workspace packages themselves, installed as wheels (not editable), so the runtime stage
#    needs nothing but the virtual environment
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-editable

# ---------------------------------------------------------------------------------------------------
# runtime: python:3.11-slim + the virtual environment, run as an unprivileged user
# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="scrm" \
      org.opencontainers.image.description="Event-driven WhatsApp SCRM: ingest, trigger-engine, sender, segmenter, reporting"
ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 scrm \
    && useradd --system --uid 10001 --gid scrm --home-dir /app --no-create-home --shell /usr/sbin/nologin scrm
# Owned by root and read-only for the service user: nothing in the image can be rewritten at run time.
COPY --from=build /app/.venv /app/.venv
WORKDIR /app
USER 10001:10001
# ingest, trigger-engine, sender, segmenter, reporting, simulator
EXPOSE 8080 8081 8082 8083 8084 8089
CMD ["ingest"]
