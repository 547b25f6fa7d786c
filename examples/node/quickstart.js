// coord from Node.js, with nothing but protos/ and @grpc/grpc-js + @grpc/proto-loader
// (loaded at run time, no code generation):
//
//   cd examples/node && npm install
//   COORD_ENDPOINTS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 node quickstart.js
//
// It puts and gets a key, grants a lease, takes a lock with it (printing the fencing
// token), releases, revokes, and prints one JSON line with what it saw. The conventions
// any client follows are in protos/coord/v1/common.proto: a follower may answer
// UNAVAILABLE with the leader's address in trailing metadata `coord-leader` (followed
// below), and writes carry `coord-client-id` + `coord-seq` so that a retry is applied at
// most once.
'use strict';

const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = process.env.COORD_PROTOS || path.join(__dirname, '..', '..', 'protos');
const ENDPOINTS = (process.env.COORD_ENDPOINTS || '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003').split(',');

const definition = protoLoader.loadSync(
  ['coord/v1/kv.proto', 'coord/v1/lease.proto', 'coord/v1/lock.proto'],
  { includeDirs: [PROTOS], keepCase: true, longs: String, enums: String, defaults: true },
);
const v1 = grpc.loadPackageDefinition(definition).coord.v1;

const stubs = {};
function stub(service, address) {
  const key = `${service}@${address}`;
  if (!stubs[key]) stubs[key] = new v1[service](address, grpc.credentials.createInsecure());
  return stubs[key];
}

const clientId = crypto.randomUUID();
let seq = 0;

// One unary call with retries: follow `coord-leader`, else try the next endpoint.
async function call(service, method, request, { write = false } = {}) {
  const metadata = new grpc.Metadata();
  if (write) {
    metadata.set('coord-client-id', clientId);
    metadata.set('coord-seq', String(++seq)); // the same seq on every retry of this call
  }
  let address = ENDPOINTS[0];
  for (let attempt = 0; attempt < 30; attempt++) {
    try {
      return await new Promise((resolve, reject) => {
        stub(service, address)[method](request, metadata, { deadline: Date.now() + 5000 },
          (err, response) => (err ? reject(err) : resolve(response)));
      });
    } catch (err) {
      if (err.code !== grpc.status.UNAVAILABLE && err.code !== grpc.status.DEADLINE_EXCEEDED) throw err;
      const leader = err.metadata && err.metadata.get('coord-leader')[0];
      address = leader ? String(leader) : ENDPOINTS[(ENDPOINTS.indexOf(address) + 1) % ENDPOINTS.length];
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${service}.${method}: no member answered`);
}

async function main() {
  const prefix = process.env.COORD_PREFIX || 'node/';
  const put = await call('KV', 'Put', { key: Buffer.from(prefix + 'greeting'), value: Buffer.from('hello from node') }, { write: true });
  const range = await call('KV', 'Range', { key: Buffer.from(prefix + 'greeting') });
  const lease = await call('Lease', 'Grant', { ttl: 10 }, { write: true });
  const lock = await call('Lock', 'Acquire', { name: prefix + 'lock', lease: lease.id, owner: `node:${process.pid}` }, { write: true });
  await call('Lock', 'Release', { name: prefix + 'lock', token: lock.token }, { write: true });
  await call('Lease', 'Revoke', { id: lease.id }, { write: true });
  console.log(JSON.stringify({
    put_revision: put.header.revision,
    value: range.kvs[0].value.toString(),
    lease: lease.id,
    lock_acquired: lock.acquired,
    fencing_token: lock.token,
  }));
  for (const s of Object.values(stubs)) s.close();
}

main().catch((err) => {
  console.error(`quickstart failed: ${err.message}`);
  process.exit(1);
});
