# syntax=docker/dockerfile:1

# The shop as one static binary on distroless: no shell, no package manager,
# uid 65532. Health is checked by the binary itself (`/shop -healthcheck`).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /shop ./cmd/shop
# A fresh named volume mounted at /data copies this directory's owner, so the
# nonroot user can create the SQLite database and its WAL files there.
RUN mkdir -p /out/data && chown 65532:65532 /out/data

FROM gcr.io/distroless/static-debian13:nonroot
COPY --from=build /shop /shop
COPY --from=build --chown=65532:65532 /out/data /data
ENV SHOP_ADDR=:8080 SHOP_DB=/data/shop.db
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/shop", "-healthcheck"]
ENTRYPOINT ["/shop"]
