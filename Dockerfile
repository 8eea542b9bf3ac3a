# One image for every slotsync process (api, worker, beat, sandbox-ehr, migrate, flower).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/slotsync
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY rules ./rules
COPY migrations ./migrations
COPY sandbox_ehr ./sandbox_ehr
COPY benchmarks ./benchmarks
RUN pip install ".[ops]" \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/slotsync slotsync
USER slotsync
# a writable working directory: embedded cache, Celery beat's schedule file
WORKDIR /var/lib/slotsync
EXPOSE 8000 8100
# SIGTERM: uvicorn drains in-flight requests, Celery performs a warm shutdown
STOPSIGNAL SIGTERM
CMD ["slotsync", "serve", "--host", "0.0.0.0", "--port", "8000"]
