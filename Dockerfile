# One image for every process of the service: compose.yaml runs the API, the worker,
# beat and Flower from it, each with its own command and health check.
# Not built in this project's CI (no Docker engine there): tests/test_container_files.py
# checks this file. Secrets come from the environment at run time, never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Production refuses unsafe defaults: no container starts without the secrets.
ENV APP_ENV=production

WORKDIR /app

# The lock alone first, so a code change does not reinstall every dependency.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# Code owned by root and read-only to the service; var/ (beat's schedule state and
# other runtime files) is the one place it writes.
RUN useradd --create-home --uid 10001 --user-group app
COPY . .
RUN mkdir -p var/beat && chown -R app:app var
USER app

EXPOSE 5000 5555
# No HEALTHCHECK here: the API, worker, beat and Flower need different checks,
# so compose.yaml gives each service its own.
CMD ["gunicorn", "--config", "gunicorn.conf.py", "backend:create_app()"]
