# syntax=docker/dockerfile:1

# The shop as one static binary on distroless: no shell, no package manager,
# uid 65532. Health is checked by the binary itself (`/shop -healthcheck`).

# The compose cluster's object store (its objects service): versitygw, the
# version the tests and make cluster run, built from source. Its stages come
# first, so that the last stage, the shop, stays the default target.
FROM golang:1.26-bookworm AS objects-build
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOBIN=/out go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
RUN mkdir -p /out/data && chown 65532:65532 /out/data

FROM gcr.io/distroless/static-debian13:nonroot AS objects
COPY --from=objects-build /out/versitygw /versitygw
COPY --from=objects-build --chown=65532:65532 /out/data /data
USER 65532:65532
EXPOSE 7070
ENTRYPOINT ["/versitygw"]

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /shop ./cmd/shop
# A fresh named volume mounted at /data copies this directory's owner, so the
# nonroot user can create the SQLite database and its WAL files there.
# /uploads is where review photos go by default: in the container itself,
# its own disk, gone when the container is replaced.
RUN mkdir -p /out/data /out/uploads && chown 65532:65532 /out/data /out/uploads

FROM gcr.io/distroless/static-debian13:nonroot
COPY --from=build /shop /shop
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/uploads /uploads
ENV SHOP_ADDR=:8080 SHOP_DB=/data/shop.db SHOP_UPLOADS=/uploads
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/shop", "-healthcheck"]
ENTRYPOINT ["/shop"]
