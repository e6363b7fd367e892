// A foreign client of cvae.v1.Generator: @grpc/grpc-js with the .proto loaded at run time.
//
//   node client.js ADDRESS SCENARIO [COUNT]
//
// Prints one JSON document on stdout: what the client saw, for tests/clients/test_node_client.py
// to compare with the server's own counts and with the Python client's bytes.
"use strict";

const crypto = require("node:crypto");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTOS = path.resolve(__dirname, "..", "..", "..", "protos");
const LOADER = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

function loadGenerator() {
  const definition = protoLoader.loadSync("cvae/v1/generator.proto", { ...LOADER, includeDirs: [PROTOS] });
  return grpc.loadPackageDefinition(definition).cvae.v1.Generator;
}

function sha256(buffer) {
  return crypto.createHash("sha256").update(buffer).digest("hex");
}

function codeName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) || String(code);
}

function deadlineIn(ms) {
  return new Date(Date.now() + ms);
}

function unary(client, method, request, options = {}) {
  return new Promise((resolve) => {
    client[method](request, new grpc.Metadata(), { deadline: deadlineIn(10000), ...options }, (error, response) => {
      resolve(error ? { code: codeName(error.code), details: error.details } : { code: "OK", response });
    });
  });
}

function summary(response) {
  const images = response.images || {};
  return {
    model_name: response.model_name,
    model_version: response.model_version,
    labels: response.labels,
    offset: response.offset,
    seed: response.seed,
    shape: (images.shape || []).map(Number),
    dtype: images.dtype || "",
    images_sha256: sha256(images.data || Buffer.alloc(0)),
    png_sha256: (response.png || []).map(sha256),
    latents_sha256: sha256((response.latents || {}).data || Buffer.alloc(0)),
  };
}

function collectStream(client, request, options = {}) {
  return new Promise((resolve) => {
    const chunks = [];
    const call = client.GenerateStream(request, { deadline: deadlineIn(20000), ...options });
    call.on("data", (response) => chunks.push(summary(response)));
    call.on("error", (error) => resolve({ code: codeName(error.code), details: error.details, chunks }));
    call.on("end", () => resolve({ code: "OK", chunks }));
  });
}

// Every RPC and encoding, a stream, and the client mistakes.
async function rpcs(client) {
  const out = {};
  const info = await unary(client, "GetModelInfo", {});
  out.model_info = info.code === "OK" ? { ...info.response, metrics: info.response.metrics.length } : info;
  for (const encoding of ["ENCODING_UNSPECIFIED", "FLOAT32", "UINT8", "PNG"]) {
    const result = await unary(client, "Generate", { labels: [0, 1, 2, 3], seed: "7", encoding });
    out[`generate_${encoding}`] = result.code === "OK" ? summary(result.response) : result;
  }
  const latents = Buffer.alloc(2 * Number(info.response.latent_dim) * 4);
  for (let i = 0; i < latents.length / 4; i += 1) latents.writeFloatLE(((i % 7) - 3) / 4, i * 4);
  const given = { labels: [5, 6], latents: { shape: [2, Number(info.response.latent_dim)], dtype: "float32", data: latents }, encoding: "FLOAT32" };
  const withLatents = await unary(client, "Generate", given);
  out.generate_latents = withLatents.code === "OK" ? summary(withLatents.response) : withLatents;
  out.stream = await collectStream(client, { labels: Array.from({ length: 10 }, (_, i) => i % 10), seed: "7", chunk_size: 4, encoding: "UINT8" });
  out.bad_label = await unary(client, "Generate", { labels: [1000] });
  out.bad_version = await unary(client, "Generate", { labels: [1], model_version: "999" });
  out.bad_stream = await collectStream(client, { labels: [1000] });
  return out;
}

// A stream the client ends while the server is (usually) blocked writing to it: read one chunk,
// stop reading (grpc-js's small flow-control window fills), then cancel or let the deadline pass.
function abandonedStream(client, request, { cancelAfterMs, deadlineMs }) {
  return new Promise((resolve) => {
    const call = client.GenerateStream(request, { deadline: deadlineIn(deadlineMs) });
    let chunks = 0;
    call.on("data", () => {
      chunks += 1;
      if (chunks === 1) {
        call.pause();
        if (cancelAfterMs === 0) call.cancel();
        else if (cancelAfterMs !== null) setTimeout(() => call.cancel(), cancelAfterMs);
      }
    });
    call.on("error", (error) => resolve({ code: codeName(error.code), chunks }));
    call.on("end", () => resolve({ code: "OK", chunks }));
  });
}

// Each message (64 float32 images, ~200 KB) is bigger than grpc-js's flow-control window, so a
// server writing to a client that stopped reading waits in the write.
async function races(client, count, mode) {
  const request = { labels: Array.from({ length: 4096 }, (_, i) => i % 10), seed: "3", chunk_size: 64, encoding: "FLOAT32" };
  const results = [];
  for (let i = 0; i < count; i += 1) {
    const options = mode === "cancel"
      ? { cancelAfterMs: (i % 6) * 20, deadlineMs: 60000 } // cancel 0-100 ms after the first chunk
      : { cancelAfterMs: null, deadlineMs: 200 + (i % 10) * 200 }; // deadlines of 0.2-2 s
    results.push(await abandonedStream(client, request, options));
  }
  const codes = {};
  for (const result of results) codes[result.code] = (codes[result.code] || 0) + 1;
  return { codes, chunks: results.map((r) => r.chunks) };
}

async function main() {
  const [address, scenario, count] = process.argv.slice(2);
  const Generator = loadGenerator();
  const client = new Generator(address, grpc.credentials.createInsecure());
  let out;
  if (scenario === "rpcs") out = await rpcs(client);
  else if (scenario === "cancel" || scenario === "deadline") out = await races(client, Number(count), scenario);
  else throw new Error(`unknown scenario ${scenario}`);
  client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
