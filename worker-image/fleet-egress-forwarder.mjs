#!/usr/bin/env node
// fleet-egress-forwarder SOCKET [PORT]: serves the host's egress proxy, mounted as a unix socket, on
// 127.0.0.1:PORT (3128), where HTTP(S)_PROXY-aware tools (git, npm, pip, curl, the agent CLIs, the inner
// dockerd) find it. It only moves bytes: the allowlist and the credential broker are the host's. Started by
// fleet-worker as root before the clone; prints "listening" once it accepts connections.
import { connect, createServer } from 'node:net';

// Arguments, not env: a warm pool container starts it while idle, when no process may carry egress settings.
const [socketPath, portArg] = process.argv.slice(2);
const port = Number(portArg || 3128);
if (!socketPath) {
  console.error('usage: fleet-egress-forwarder SOCKET [PORT]');
  process.exit(2);
}

const server = createServer((client) => {
  const upstream = connect(socketPath);
  client.pipe(upstream);
  upstream.pipe(client);
  // Either side's end or failure ends both; a refused socket is the proxy's absence, reported on the client.
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', (error) => {
    console.error(`fleet-egress-forwarder: the host's proxy is unreachable: ${error.message}`);
    close();
  });
  client.on('close', close);
  upstream.on('close', close);
});
server.on('error', (error) => {
  console.error(`fleet-egress-forwarder: cannot listen on 127.0.0.1:${port}: ${error.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
