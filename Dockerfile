# The rayop operator image: `make image` (needs docker or podman). The build stage installs rayop into
# a virtual environment with scripts/install-rayop.sh, the script tests/integration/test_image.py also
# runs; the final stage copies that environment onto the same base image and runs as a non-root user.
# The Helm chart runs it with a read-only root filesystem (bytecode is compiled at build time).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml ./
COPY rayop ./rayop
COPY scripts/install-rayop.sh ./scripts/
RUN PIP_NO_CACHE_DIR=1 bash scripts/install-rayop.sh /opt/rayop

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/rayop /opt/rayop
# HOME: the user has no passwd entry, and the operator looks for ~/.kube/config before the in-cluster
# service account; /tmp is the chart's writable emptyDir.
ENV PATH=/opt/rayop/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 8082 9443
ENTRYPOINT ["rayop", "operator"]
