// Calls coord.v1 over HTTP with the Connect client of @connectrpc/connect-node, in JSON.
// The service schemas come at run time from a FileDescriptorSet written by the Python
// test (no code generation). Prints one JSON line of results for the test to check.
import { readFileSync } from "node:fs";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [baseUrl, descriptorFile, prefix] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorFile)));
const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false });
const kv = createClient(registry.getService("coord.v1.KV"), transport);
const lease = createClient(registry.getService("coord.v1.Lease"), transport);
const election = createClient(registry.getService("coord.v1.Election"), transport);
const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);

const out = {};
const put = await kv.put({ key: enc(prefix + "greeting"), value: enc("hello from node") });
out.putRevision = put.header.revision.toString();
const range = await kv.range({ key: enc(prefix + "greeting") });
out.value = dec(range.kvs[0].value);
try {
  await lease.revoke({ id: 987654321n });
  out.revokeError = "none";
} catch (err) {
  const e = ConnectError.from(err);
  out.revokeError = Code[e.code];
}
// Server streaming: observe an election while this process campaigns in it.
const name = prefix + "election";
const seen = [];
const abort = new AbortController();
let firstState;
const started = new Promise((resolve) => { firstState = resolve; });
const observing = (async () => {
  try {
    for await (const state of election.observe({ name }, { signal: abort.signal })) {
      seen.push(state.leader ? dec(state.value) : "");
      firstState();
      if (seen.at(-1) === "node-leader") abort.abort();
    }
  } catch (err) {
    if (ConnectError.from(err).code !== Code.Canceled) throw err;
  }
})();
const granted = await lease.grant({ ttl: 10n });
await started; // the stream is open and has answered with the current state
await election.campaign({ name, lease: granted.id, value: enc("node-leader") });
await observing;
out.observed = seen;
console.log(JSON.stringify(out));
