# syntax=docker/dockerfile:1
# Build: docker build -t expensify-operator:0.1.0 .
# A static-ish glibc binary on distroless, as a non-root user, with nothing else inside.

FROM rust:1.89-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in client plan apply_e2e controller_e2e; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin expensify-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/expensify-operator /usr/local/bin/expensify-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/expensify-operator"]
CMD ["controller"]
