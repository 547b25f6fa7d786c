// KV.Pipeline from Node.js: coord's fast path for any language, from protos/ and
// @grpc/grpc-js alone (docs/pipeline.md describes the protocol).
//
//   cd examples/node && npm install
//   COORD_ENDPOINTS=127.0.0.1:7001 node pipeline.js
//
// One bidirectional stream carries many operations: every operation issued in the same
// turn of the event loop goes in one PipelineRequest, each with an id its result echoes.
// The demo writes COORD_OPS keys with COORD_CONCURRENCY operations in flight (timed),
// reads them back linearizably, runs a Txn, takes and releases a lock, provokes one
// error (it ends only that operation), and prints one JSON line with what it saw.
'use strict';

const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = process.env.COORD_PROTOS || path.join(__dirname, '..', '..', 'protos');
const ENDPOINT = (process.env.COORD_ENDPOINTS || '127.0.0.1:7001').split(',')[0];
const PREFIX = process.env.COORD_PREFIX || 'pipeline-demo/';
const OPS = Number(process.env.COORD_OPS || 2000);
const CONCURRENCY = Number(process.env.COORD_CONCURRENCY || 64);

const definition = protoLoader.loadSync(
  ['coord/v1/kv.proto', 'coord/v1/lease.proto'],
  { includeDirs: [PROTOS], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
const v1 = grpc.loadPackageDefinition(definition).coord.v1;

class PipelineError extends Error {
  constructor(code, message, leader) {
    super(`${grpc.status[code] || code}: ${message}`);
    this.code = code;
    this.leader = leader;
  }
}

// One KV.Pipeline stream. call(kind, request) resolves with the operation's response
// (kind: range, put, delete_range, txn, lock_acquire, lock_release) or rejects with a
// PipelineError carrying the gRPC code the unary call would have ended with.
class Pipeline {
  constructor(kv) {
    this.stream = kv.Pipeline();
    this.nextId = 1;
    this.waiting = new Map();
    this.queued = [];
    this.stream.on('data', (response) => {
      for (const result of response.results) {
        const op = this.waiting.get(result.id);
        if (!op) continue;
        this.waiting.delete(result.id);
        if (result.code === 0) op.resolve(result[result.response]);
        else op.reject(new PipelineError(result.code, result.message, result.leader));
      }
    });
    const failAll = (err) => {
      for (const op of this.waiting.values()) op.reject(err);
      this.waiting.clear();
    };
    this.stream.on('error', failAll);
    this.stream.on('end', () => failAll(new Error('the stream ended')));
  }

  call(kind, request, { timeoutMs = 0, clientId = '', seq = 0 } = {}) {
    const id = String(this.nextId++);
    const op = { id, client_id: clientId, seq: String(seq), timeout_ms: String(timeoutMs), [kind]: request };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.queued.push(op);
      // Everything issued in this turn of the event loop travels in one message.
      if (this.queued.length === 1) setImmediate(() => this.flush());
    });
  }

  flush() {
    while (this.queued.length) {
      this.stream.write({ ops: this.queued.splice(0, 1024) });
    }
  }

  close() {
    this.stream.end();
  }
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => client[method](request, (err, res) => (err ? reject(err) : resolve(res))));
}

async function main() {
  const kv = new v1.KV(ENDPOINT, grpc.credentials.createInsecure());
  const lease = new v1.Lease(ENDPOINT, grpc.credentials.createInsecure());
  const pipe = new Pipeline(kv);
  const clientId = crypto.randomUUID();
  let seq = 0;

  // Writes, COORD_CONCURRENCY in flight, each exactly-once (client id + seq).
  let next = 0;
  const started = process.hrtime.bigint();
  async function writer() {
    while (next < OPS) {
      const i = next++;
      await pipe.call('put', { key: Buffer.from(`${PREFIX}k${i}`), value: Buffer.from(`v${i}`) },
        { timeoutMs: 10000, clientId, seq: ++seq });
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, OPS) }, writer));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  // Linearizable reads of a few of them, issued together: one message, one ReadIndex round.
  const reads = await Promise.all([0, Math.floor(OPS / 2), OPS - 1].map(
    (i) => pipe.call('range', { key: Buffer.from(`${PREFIX}k${i}`) })));
  const values = reads.map((r) => r.kvs[0].value.toString());
  const count = (await pipe.call('range', {
    key: Buffer.from(`${PREFIX}k`), range_end: Buffer.from(`${PREFIX}l`), count_only: true,
  })).count;

  // A Txn: compare-and-set on one key.
  const txn = await pipe.call('txn', {
    compare: [{ key: Buffer.from(`${PREFIX}k0`), target: 'COMPARE_TARGET_VALUE', result: 'COMPARE_RESULT_EQUAL', value: Buffer.from('v0') }],
    success: [{ request_put: { key: Buffer.from(`${PREFIX}k0`), value: Buffer.from('swapped') } }],
  }, { clientId, seq: ++seq });

  // A lock held by a lease, its fencing token, then released.
  const granted = await unary(lease, 'Grant', { ttl: 30 });
  const acquired = await pipe.call('lock_acquire', { name: `${PREFIX}lock`, lease: granted.id },
    { timeoutMs: 10000, clientId, seq: ++seq });
  await pipe.call('lock_release', { name: `${PREFIX}lock`, token: acquired.token }, { clientId, seq: ++seq });
  await unary(lease, 'Revoke', { id: granted.id });

  // An operation's error is its own: the stream and the other operations go on.
  let errorCode = null;
  try {
    await pipe.call('put', { key: Buffer.from(`${PREFIX}bad`), value: Buffer.from('x'), lease: '999999' });
  } catch (err) {
    errorCode = grpc.status[err.code];
  }
  const after = await pipe.call('range', { key: Buffer.from(`${PREFIX}k0`) });

  pipe.close();
  kv.close();
  lease.close();
  console.log(JSON.stringify({
    puts: OPS,
    concurrency: CONCURRENCY,
    puts_per_second: Math.round(OPS / seconds),
    values,
    count,
    txn_succeeded: txn.succeeded,
    lock_acquired: acquired.acquired,
    fencing_token: acquired.token,
    error_code: errorCode,
    after_error: after.kvs[0].value.toString(),
  }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
