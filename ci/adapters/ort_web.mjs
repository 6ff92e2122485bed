// igpt-onnx `cmd:` runtime adapter for onnxruntime-web's WebAssembly backend, run in Node on one
// thread. The model is handed over as bytes, as in a browser; its external data, when the graph
// has some, must lie beside it as `<model>.data` (igpt-onnx `export --external-data` names it
// so) and is handed over as bytes too. WebAssembly's 4 GiB memory bounds the graph's size.
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import * as ort from 'onnxruntime-web';
import { modelArgument, serve } from './serve.mjs';

const model = modelArgument('ort-web');
try {
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const options = { executionProviders: ['wasm'], logSeverityLevel: 3 };
  const data = `${model}.data`;
  if (existsSync(data)) {
    options.externalData = [{ path: basename(data), data: new Uint8Array(readFileSync(data)) }];
  }
  const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(model)), options);
  await serve(ort, session, `onnxruntime-web ${ort.env.versions.web} wasm`);
} catch (e) {
  process.stderr.write(`ort-web: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}
