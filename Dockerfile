# One image for every Bobbin process: the API (`bobbin serve`), the workers
# (`bobbin worker`) and Flower (`celery ... flower`). docker-compose.yml runs it;
# docs/deploy.md explains the settings.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
COPY shared ./shared
COPY api ./api
COPY workers ./workers
COPY cli ./cli
RUN python -m venv /opt/bobbin && /opt/bobbin/bin/pip install ".[ops]"

FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PATH=/opt/bobbin/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BOBBIN_DATA_DIR=/data \
    BOBBIN_LOG_FORMAT=json
# A fixed non-root uid, so a shared workspace volume can be owned by it on every host.
RUN groupadd --system --gid 10001 bobbin \
    && useradd --system --uid 10001 --gid bobbin --home-dir /data --shell /usr/sbin/nologin bobbin \
    && mkdir -p /data/workspaces \
    && chown -R bobbin:bobbin /data
COPY --from=build /opt/bobbin /opt/bobbin
USER bobbin
WORKDIR /data
# 8000: the API; 9808: a worker's metrics (BOBBIN_WORKER_METRICS_PORT); 5555: Flower.
EXPOSE 8000 9808 5555
CMD ["bobbin", "serve", "--host", "0.0.0.0", "--port", "8000"]
