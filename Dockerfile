# Tierwise container: multi-stage, non-root; migrates, then serves. TIERWISE_DATABASE_URL is required here
# (the embedded Postgres is for laptops, not containers).
FROM python:3.12-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install -r requirements.lock

FROM python:3.12-slim AS runtime
# LightGBM (the learned ranker) needs the GNU OpenMP runtime, which slim Debian images do not carry.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv tierwise
WORKDIR /srv
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/srv PYTHONUNBUFFERED=1 TIERWISE_ENVIRONMENT=production TIERWISE_HOST=0.0.0.0
USER tierwise
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"
CMD ["sh", "-c", ": \"${TIERWISE_DATABASE_URL:?TIERWISE_DATABASE_URL is required}\" && python -m app.cli migrate && exec python -m app.cli serve --workers ${TIERWISE_WORKERS:-2}"]
