// The node-oidc-provider the m2m interop tests run against (started and
// stopped by interop/nodeoidc_test.go): the client credentials grant,
// RFC 8707 resource indicators selecting the audience, RFC 9068 JWT access
// tokens whose aud is the resource, and token introspection.
//
// Environment:
//   OIDC_PROVIDER_DIR  folder whose node_modules holds oidc-provider
//                      (printed by scripts/oidc-provider.sh)
//   PORT               loopback port of the provider; its issuer is
//                      http://127.0.0.1:PORT
//   POST_ONLY_PORT     loopback port of a second provider whose metadata
//                      lists client_secret_post as its only client
//                      authentication method
//   CLIENT_SECRET      secret of the registered clients
//   SHORT_TTL          lifetime in seconds of https://short.test/ tokens
//
// Resource servers (unknown resources get invalid_target):
//   https://calendar.test/  event.view event.create event.update, JWT
//   https://files.test/     file.view file.create, JWT
//   https://short.test/     event.view, JWT living SHORT_TTL seconds
//   https://opaque.test/    event.view, opaque (for introspection)
//
// Clients (client_credentials only, scope event.view event.create file.view):
//   m2m-basic  token_endpoint_auth_method client_secret_basic
//   m2m-post   token_endpoint_auth_method client_secret_post
// The provider lists file.create and event.update as scopes, so asking
// for them is invalid_scope rather than silently dropped.
//
// It writes "ready" on stdout once both providers listen, and stops on
// SIGTERM or SIGINT.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`oidc-provider server: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const dir = env('OIDC_PROVIDER_DIR');
const port = Number(env('PORT'));
const postOnlyPort = Number(env('POST_ONLY_PORT'));
const secret = env('CLIENT_SECRET');
const shortTTL = Number(process.env.SHORT_TTL || '5');

// oidc-provider lives in the cache folder, not beside this file.
const entry = createRequire(join(dir, 'package.json')).resolve('oidc-provider');
const { default: Provider, errors } = await import(pathToFileURL(entry).href);

const resourceServers = {
  'https://calendar.test/': { scope: 'event.view event.create event.update', accessTokenTTL: 600 },
  'https://files.test/': { scope: 'file.view file.create', accessTokenTTL: 600 },
  'https://short.test/': { scope: 'event.view', accessTokenTTL: shortTTL },
  'https://opaque.test/': { scope: 'event.view', accessTokenTTL: 600, accessTokenFormat: 'opaque' },
};

const clientScope = 'event.view event.create file.view';

function client(id, method) {
  return {
    client_id: id,
    client_secret: secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: method,
    scope: clientScope,
  };
}

// One RSA key per run signs the JWT access tokens.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `k-${Date.now()}`, use: 'sig', alg: 'RS256' };

function provider(issuer, clients, clientAuthMethods) {
  const p = new Provider(issuer, {
    clients,
    ...(clientAuthMethods && { clientAuthMethods }),
    jwks: { keys: [jwk] },
    scopes: ['openid', ...new Set(Object.values(resourceServers).flatMap((rs) => rs.scope.split(' ')))],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // A client may introspect only its own tokens.
        allowedPolicy: (ctx, caller, token) => token.clientId === caller.clientId,
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
            accessTokenFormat: rs.accessTokenFormat ?? 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  p.on('server_error', (ctx, err) => console.error(`oidc-provider server ${issuer}: ${err.stack}`));
  return p;
}

const servers = [
  [port, provider(`http://127.0.0.1:${port}`,
    [client('m2m-basic', 'client_secret_basic'), client('m2m-post', 'client_secret_post')])],
  [postOnlyPort, provider(`http://127.0.0.1:${postOnlyPort}`,
    [client('m2m-post', 'client_secret_post')], ['client_secret_post'])],
].map(([p, prov]) => createServer(prov.callback()).listen(p, '127.0.0.1'));

await Promise.all(servers.map((s) => new Promise((resolve, reject) => {
  s.once('listening', resolve);
  s.once('error', reject);
})));
console.log('ready');

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const s of servers) s.close();
    process.exit(0);
  });
}
