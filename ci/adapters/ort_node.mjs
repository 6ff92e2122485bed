// igpt-onnx `cmd:` runtime adapter for onnxruntime-node (CPU execution provider).
import * as ort from 'onnxruntime-node';
import { modelArgument, serve } from './serve.mjs';

const model = modelArgument('ort-node');
try {
  // From a path: external data is resolved beside the model, as ONNX Runtime does.
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    logSeverityLevel: 3,
  });
  await serve(ort, session, `onnxruntime-node ${ort.env.versions.node} CPUExecutionProvider`);
} catch (e) {
  process.stderr.write(`ort-node: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}
