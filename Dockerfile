# syntax=docker/dockerfile:1
#
# One image for every sfconnect process; the command picks the service:
#   python -m manager          (default; HTTP on 8080)
#   python -m builder          (HTTP on 8081)
#   python -m salesforce_sim   (the simulated org, for local stacks only; HTTP on 8090)
#
# Stage "builder" resolves the locked runtime dependencies (uv.lock, no dev group) into /opt/venv and
# installs the project itself as a regular (non-editable) wheel; the final stage copies only that venv
# onto a clean slim Python and runs as an unprivileged user. Dev tools (pytest, secantusdb, ...) never
# reach the final image. tests/deploy/test_deploy_dockerfile.py checks these properties.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Keep in step with the uv version the Makefile installs.
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

COPY --from=uv /uv /usr/local/bin/uv

# Use the image's interpreter (the final stage has the same one at the same path), compile bytecode
# now because the runtime filesystem is read-only, and copy files out of the cache instead of linking.
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself, as a wheel built from the sources the wheel target lists in pyproject.toml.
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sfconnect" \
      org.opencontainers.image.description="Salesforce connection Manager and Builder (one image, pick the service by command)" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric id so Kubernetes can check runAsNonRoot without resolving names.
RUN groupadd --system --gid 10001 sfconnect \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sfconnect

# Owned by root and not writable by the service user: the code cannot be changed at run time.
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/sfconnect-healthcheck

# PYTHONSAFEPATH: never put the working directory on sys.path (nothing writable shadows a module).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONSAFEPATH=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1

# An empty, root-owned working directory. The processes write nothing but temporary files under /tmp
# (mount a tmpfs/emptyDir there when the root filesystem is read-only).
WORKDIR /opt/sfconnect
USER 10001:10001

EXPOSE 8080 8081 8090

# The default command is the Manager; its liveness endpoint is the default health check. Compose and
# Kubernetes set the command and the check for each service.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sfconnect-healthcheck", "http://127.0.0.1:8080/healthz"]

STOPSIGNAL SIGTERM
CMD ["python", "-m", "manager"]
