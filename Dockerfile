# syntax=docker/dockerfile:1
# Build: docker build -t expensify-operator:0.1.0 .   (BuildKit; docker buildx for other platforms)
# A glibc binary on distroless, as a non-root user, with nothing else inside.
#
# The whole build context goes in (.dockerignore leaves out target/ and .git), and cargo's
# registry and target/ are BuildKit cache mounts: rebuilds are incremental without a
# hand-kept list of stub files that drifts from Cargo.toml. CI replays this stage without a
# daemon (.ci/image.py): keep RUN paths relative to WORKDIR.

FROM rust:1.89-bookworm AS build
# `dev` builds quickly for a look; releases use the default.
ARG PROFILE=release
# One target/ cache per platform: a multi-platform build runs them side by side.
ARG TARGETPLATFORM
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,id=expensify-operator-target-$TARGETPLATFORM,target=/src/target \
    sh .ci/build-binary.sh "$PROFILE" out

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/out/expensify-operator /usr/local/bin/expensify-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/expensify-operator"]
CMD ["controller"]
