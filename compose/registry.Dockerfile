# The suite's registry: the suite's image with Debian's docker-registry, for docker-compose.yml's `registry`
# profile and the fleet unit paz-registry.service; it runs `paz registry serve`. Build it from compose/
# once the suite's image exists (`docker-compose build` makes that one; the profile then builds this):
#   docker build -f registry.Dockerfile --build-arg PAZ_IMAGE=paz-suite:latest -t paz-registry .
# The package comes from the Debian mirror of the suite's (bookworm) base.
ARG PAZ_IMAGE=paz-suite:latest
FROM ${PAZ_IMAGE}
RUN set -eu; command -v docker-registry >/dev/null || { apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry; \
    rm -rf /var/lib/apt/lists/*; }
EXPOSE 5000
CMD ["paz", "--state-dir", "/var/lib/paz", "registry", "serve"]
