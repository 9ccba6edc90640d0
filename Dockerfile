# The image of the Helm chart and deploy/compose.yaml (README.md: Kubernetes). Not built on the
# development machine (no Docker there); deploy/entrypoint.sh is tested outside Docker.
FROM python:3.11-slim AS build
# mysqlclient builds against MariaDB's client headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 tracardi \
 && useradd --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin tracardi
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 VAR_DIR=/app/var
WORKDIR /app
COPY --chown=tracardi:tracardi . /app
USER tracardi
# The admin's static files, served by whitenoise from $VAR_DIR/static (a throwaway key: the
# real SECRET_KEY comes from the environment at run time; no key file stays in the image).
RUN mkdir -m 0700 -p /app/var \
 && SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v 0
EXPOSE 8000
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["api"]
