# Debian's prometheus, for docker-compose.yml's `prometheus` profile. Build from compose/ (the file does):
#   docker build -f prometheus.Dockerfile -t paz-prometheus .
# BASE_IMAGE is any Debian bookworm image; the package comes from its Debian mirror.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eu; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
    rm -rf /var/lib/apt/lists/*; mkdir -p /prometheus; chown prometheus /prometheus
USER prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
