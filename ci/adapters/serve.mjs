// The igpt-onnx `cmd:` runtime protocol (docs/verify.md, "Any runtime: cmd:PROGRAM") for the ONNX Runtime JavaScript
// packages: `ready <provider>`, then per `run INPUTS_PATH OUTPUTS_PATH` line the graph's outputs
// written as safetensors and `ok`, or `error <one line>`. Safetensors
// (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a JSON
// header of {name: {dtype, shape, data_offsets}}, then the raw little-endian data.
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const ARRAYS = { F32: Float32Array, F16: Uint16Array, I64: BigInt64Array };
const ORT_TYPES = { F32: 'float32', F16: 'float16', I64: 'int64' };
const ST_TYPES = { float32: 'F32', float16: 'F16', int64: 'I64' };

/** Every tensor of a safetensors file as an ort.Tensor, by name. */
export function readSafetensors(ort, path) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const feeds = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const Array_ = ARRAYS[info.dtype];
    if (!Array_) throw new Error(`input ${name}: dtype ${info.dtype} is not F32, F16 or I64`);
    const [start, end] = info.data_offsets;
    // A copy, so the typed array is aligned whatever the offset.
    const bytes = buf.buffer.slice(buf.byteOffset + 8 + n + start, buf.byteOffset + 8 + n + end);
    feeds[name] = new ort.Tensor(ORT_TYPES[info.dtype], new Array_(bytes), info.shape);
  }
  return feeds;
}

/** Writes ort.Tensors by name (types other than float32/float16/int64 as float32). */
export function writeSafetensors(path, tensors) {
  const header = {};
  const chunks = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    let dtype = ST_TYPES[t.type];
    let data = t.data;
    if (!dtype) {
      dtype = 'F32';
      data = Float32Array.from(data, Number);
    }
    const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype, shape: t.dims.map(Number), data_offsets: [offset, offset + raw.length] };
    chunks.push(raw);
    offset += raw.length;
  }
  let head = JSON.stringify(header);
  head += ' '.repeat((8 - (Buffer.byteLength(head) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(head)));
  writeFileSync(path, Buffer.concat([len, Buffer.from(head, 'utf8'), ...chunks]));
}

const oneLine = (e) => String(e && e.message ? e.message : e).split(/\s+/).join(' ').trim() || 'error';

/** Answers requests on stdin for `session` until stdin closes or `quit`. */
export async function serve(ort, session, provider) {
  process.stdout.write(`ready ${provider}\n`);
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    const words = line.trim().split(/\s+/);
    if (words[0] === '') continue;
    if (words[0] === 'quit') break;
    if (words[0] !== 'run' || words.length !== 3) {
      process.stdout.write(`error unknown request: ${oneLine(line)}\n`);
      continue;
    }
    try {
      const results = await session.run(readSafetensors(ort, words[1]));
      const ordered = {};
      for (const name of session.outputNames) ordered[name] = results[name];
      writeSafetensors(words[2], ordered);
      process.stdout.write('ok\n');
    } catch (e) {
      process.stdout.write(`error ${oneLine(e)}\n`);
    }
  }
  rl.close();
  await session.release?.();
}

/** `serve MODEL` from the command line, or exit 2 with a usage line. */
export function modelArgument(name) {
  const args = process.argv.slice(2);
  if (args.length !== 2 || args[0] !== 'serve') {
    process.stderr.write(`usage: ${name} serve MODEL\n`);
    process.exit(2);
  }
  return args[1];
}
