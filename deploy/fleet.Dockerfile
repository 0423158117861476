# fleet from this repository's source, for the control plane (bridge, board). Spawn hosts run fleet
# directly under systemd (fleet-spawn.service): they need the host's Docker and sysbox.
# Build context: the repository root (docker-compose.yml sets it).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY src ./src
COPY queues ./queues
COPY processors ./processors
COPY board ./board
COPY tsconfig.json ./
# tsx compiles the TypeScript sources at start; no build step.
USER node
ENV FLEET_DATA_DIR=/data
ENTRYPOINT ["npx", "--no-install", "fleet"]
CMD ["start", "--roles", "bridge,board"]
