// A node-oidc-provider for the m2m client-authentication interop tests
// (started and stopped by interop/credentials_oidcprovider_test.go): the
// client credentials grant over HTTPS that asks for a client certificate,
// with private_key_jwt, tls_client_auth, self_signed_tls_client_auth,
// certificate-bound access tokens (RFC 8705) and DPoP (RFC 9449), and
// RFC 9068 JWT access tokens whose cnf claim shows the binding. The
// clients are the test's, read from a file.
//
// Environment:
//   OIDC_PROVIDER_DIR   folder whose node_modules holds oidc-provider
//                       (printed by scripts/oidc-provider.sh)
//   PORT                loopback port; the issuer is https://127.0.0.1:PORT
//   TLS_CERT, TLS_KEY   PEM files of the server's certificate and key
//   CLIENT_CA           PEM file of the CA whose client certificates
//                       tls_client_auth trusts
//   CLIENTS             JSON file: an array of client metadata; the
//                       token endpoint demands a DPoP nonce from clients
//                       whose id ends in "-nonce"
//
// Resource servers (JWT access tokens):
//   https://calendar.test/  event.view event.create, 600 s
//   https://short.test/     event.view, 3 s
//
// It writes "ready" on stdout once it listens, and stops on SIGTERM or
// SIGINT.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`oidc-provider credentials server: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const dir = env('OIDC_PROVIDER_DIR');
const port = Number(env('PORT'));
const clients = JSON.parse(readFileSync(env('CLIENTS'), 'utf8'));

const entry = createRequire(join(dir, 'package.json')).resolve('oidc-provider');
const { default: Provider, errors } = await import(pathToFileURL(entry).href);

const resourceServers = {
  'https://calendar.test/': { scope: 'event.view event.create', accessTokenTTL: 600 },
  'https://short.test/': { scope: 'event.view', accessTokenTTL: 3 },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `k-${Date.now()}`, use: 'sig', alg: 'RS256' };

// The client certificate of the TLS connection, as the server saw it in
// the handshake (no proxy in between).
function peerCertificate(ctx) {
  const cert = ctx.socket.getPeerX509Certificate?.();
  return cert ?? undefined;
}

const issuer = `https://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients,
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'event.view', 'event.create'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: (ctx) => ctx.oidc.client?.clientId?.endsWith('-nonce') === true,
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      selfSignedTlsClientAuth: true,
      tlsClientAuth: true,
      getCertificate: peerCertificate,
      // Verified against CLIENT_CA in the handshake.
      certificateAuthorized: (ctx) => ctx.socket.authorized === true,
      certificateSubjectMatches(ctx, property, expected) {
        const cert = peerCertificate(ctx);
        switch (property) {
          case 'tls_client_auth_san_dns':
            return (cert?.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`);
          case 'tls_client_auth_subject_dn':
            return cert?.subject === expected;
          default:
            return false;
        }
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      getResourceServerInfo(ctx, resource) {
        const rs = resourceServers[resource];
        if (!rs) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: rs.scope,
          audience: resource,
          accessTokenTTL: rs.accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});
provider.on('server_error', (ctx, err) => console.error(`oidc-provider credentials server: ${err.stack}`));

const server = createServer({
  cert: readFileSync(env('TLS_CERT')),
  key: readFileSync(env('TLS_KEY')),
  ca: readFileSync(env('CLIENT_CA')),
  requestCert: true, // ask for a certificate; tls_client_auth decides whether it was verified
  rejectUnauthorized: false, // self-signed ones are checked by self_signed_tls_client_auth
}, provider.callback()).listen(port, '127.0.0.1');

await new Promise((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
});
console.log('ready');

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
