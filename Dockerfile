# The shopstream worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY models ./models
RUN pip install --no-cache-dir . && useradd --create-home shopstream && mkdir /data && chown shopstream /data
USER shopstream
EXPOSE 6066
CMD ["shopstream", "worker"]
