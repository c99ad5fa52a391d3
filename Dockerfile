# Builds the same binary the same way the README does (`cargo build --release`),
# then copies it into a small non-root image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin roster

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/roster /usr/local/bin/roster
USER 65532:65532
EXPOSE 8080 50051 9090
ENTRYPOINT ["/usr/local/bin/roster"]
CMD ["serve"]
