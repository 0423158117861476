/**
 * The fleet CA of the credential broker: the proxy terminates TLS for the forge's host only, with a leaf
 * certificate this CA signs, so that it can add the job's Authorization. Workers trust the CA for that one
 * host (git's http.<url>.sslCAInfo), never in the system store. Node's crypto cannot sign X.509, so
 * node-forge does the signing; the keys come from Node's own generator (fast, native).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

export interface FleetCa {
  /** PEM of the CA certificate: what the worker trusts for the forge host. */
  certPem: string;
  /** A key and certificate for `host`, signed by the CA (cached per host). */
  leafFor(host: string): { keyPem: string; certPem: string };
}

function newKeys(): { pub: forge.pki.PublicKey; priv: forge.pki.PrivateKey; privPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pubPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const privPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  return { pub: forge.pki.publicKeyFromPem(pubPem), priv: forge.pki.privateKeyFromPem(privPem), privPem };
}

function serial(): string {
  // Positive (top bit clear), 16 bytes: unique enough that no two certificates of one CA share one.
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, days: number) {
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60 * 60 * 1000);
  cert.validity.notAfter = new Date(now + days * 24 * 60 * 60 * 1000);
}

/** A new CA, held in this process's memory only: a restart makes a new one (running workers end with their proxy anyway). */
export function createFleetCa(name = 'fleet egress broker CA'): FleetCa {
  const keys = newKeys();
  const ca = forge.pki.createCertificate();
  ca.publicKey = keys.pub;
  ca.serialNumber = serial();
  validity(ca, 365);
  const subject = [{ name: 'commonName', value: name }];
  ca.setSubject(subject);
  ca.setIssuer(subject);
  ca.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  ca.sign(keys.priv as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  const certPem = forge.pki.certificateToPem(ca);
  const leaves = new Map<string, { keyPem: string; certPem: string }>();

  return {
    certPem,
    leafFor(host) {
      const cached = leaves.get(host);
      if (cached) return cached;
      const leafKeys = newKeys();
      const cert = forge.pki.createCertificate();
      cert.publicKey = leafKeys.pub;
      cert.serialNumber = serial();
      validity(cert, 30);
      cert.setSubject([{ name: 'commonName', value: host }]);
      cert.setIssuer(ca.subject.attributes);
      const isIp = /^[\d.]+$/.test(host) || host.includes(':');
      cert.setExtensions([
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: [isIp ? { type: 7, ip: host } : { type: 2, value: host }] },
      ]);
      cert.sign(keys.priv as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
      const leaf = { keyPem: leafKeys.privPem, certPem: forge.pki.certificateToPem(cert) };
      leaves.set(host, leaf);
      return leaf;
    },
  };
}
