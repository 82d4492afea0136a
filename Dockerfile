# The worker (default) and the API, from one image. It builds with the classic builder as
# well as BuildKit (no BuildKit-only syntax), so `docker build -t behavioral-analytics .`,
# `gcloud builds submit --tag=IMAGE` and `gcloud builds submit --config=cloudbuild.yaml` all work.
# Run the API with: docker run … behavioral-analytics api
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The application and its runtime dependencies in a virtual environment, copied whole into
# the runtime stage: no build tools and no wheel files end up in the image.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir '.[gcp,api]'

FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    BA_BACKEND=gcp \
    BA_API_HOST=0.0.0.0
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
WORKDIR /tmp
# Configuration comes from the environment: GOOGLE_CLOUD_PROJECT (or PROJECT_ID), REGION,
# PUBSUB_TOPIC, PUBSUB_SUBSCRIPTION, FIRESTORE_DATABASE, WORKER_POOL_NAME, BA_* (docs/gcp.md).
# The worker drains on SIGTERM within 8 s (Cloud Run allows about 10).
STOPSIGNAL SIGTERM
ENTRYPOINT ["behavioral-analytics"]
CMD ["worker"]
