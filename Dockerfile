# The worker (default) and the API, from one image. Build: docker build -t behavioral-analytics .
# Run the API with: docker run … behavioral-analytics api
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels '.[gcp,api]'

FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    BA_BACKEND=gcp \
    BA_API_HOST=0.0.0.0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'behavioral-analytics[gcp,api]' \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
WORKDIR /tmp
# Configuration comes from the environment: GOOGLE_CLOUD_PROJECT (or PROJECT_ID), REGION,
# PUBSUB_TOPIC, PUBSUB_SUBSCRIPTION, FIRESTORE_DATABASE, WORKER_POOL_NAME, BA_* (docs/gcp.md).
# The worker drains on SIGTERM within 8 s (Cloud Run allows about 10).
STOPSIGNAL SIGTERM
ENTRYPOINT ["behavioral-analytics"]
CMD ["worker"]
