# The registry's standalone server (dist/registry.mjs) as an image. On its own it is what registry:2
# is: `docker run -p 5000:5000 IMAGE` serves a filesystem registry from the volume /var/lib/registry,
# configured by bin/image-config.yml and REGISTRY_* variables. The AWS deployment's upload service
# (lib/upload-service.ts) runs it for linux/arm64 with S3 and DynamoDB variables instead.
#
# node:20-bookworm-slim is pinned by tag: pin it by digest (FROM node:20-bookworm-slim@sha256:...) where
# builds must be reproducible.

FROM node:20-bookworm-slim AS build
WORKDIR /build
# Dependencies first, in their own layer: rebuilt only when the lock file changes. No install scripts:
# esbuild finds its platform binary without one, and dev tools' scripts download what a build never uses.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY bin/registry.ts bin/gc.ts bin/
COPY functions/ functions/
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# The bundle keeps its packages external (esbuild --packages=external): it needs the production ones.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /build/dist/ dist/
COPY bin/image-config.yml /etc/registry/config.yml
# Owned by the unprivileged user before it becomes a volume, so that a new volume is writable.
RUN mkdir -p /var/lib/registry && chown node:node /var/lib/registry
VOLUME /var/lib/registry
USER node
EXPOSE 5000
# No curl in the slim image: node asks. 401 is healthy too: a registry with authentication is up.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:5000/v2/').then((r) => process.exit([200, 401].includes(r.status) ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "--enable-source-maps", "dist/registry.mjs"]
CMD ["/etc/registry/config.yml"]
