// A Node.js service that exports its spans over OTLP/HTTP with the OpenTelemetry JS SDK.
// Run by tests/test_bridge_clients.py: node node_service.js BASE_URL json|protobuf gzip|none
// (NODE_PATH points at the packages of package.json, installed by the test).
'use strict';

const { diag, DiagConsoleLogger, DiagLogLevel } = require('@opentelemetry/api');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');

const [baseUrl, protocol, compression] = process.argv.slice(2);
const { OTLPTraceExporter } = require(
  protocol === 'json'
    ? '@opentelemetry/exporter-trace-otlp-http'
    : '@opentelemetry/exporter-trace-otlp-proto'
);

// The exporter reports a partial success through diag at WARN: print it for the test.
diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);

const token = process.env.BRIDGE_TOKEN;
const exporter = new OTLPTraceExporter({
  url: `${baseUrl}/v1/traces`,
  compression,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
});
const provider = new NodeTracerProvider({
  spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 60000 })],
});
const tracer = provider.getTracer('node-shop');

const t0 = Date.UTC(2026, 10, 27, 14, 3, 5, 123); // 2026-11-27T14:03:05.123Z, in ms

tracer
  .startSpan('GET /cart', {
    startTime: t0,
    attributes: {
      'enduser.id': 'n-1',
      'bucket.user.name': 'Grace',
      'bucket.user.age': 36,
      'bucket.company.id': 'globex',
      'bucket.company.plan': 'enterprise',
    },
  })
  .end(t0 + 5);
tracer
  .startSpan('Added to cart', {
    startTime: t0 + 10,
    attributes: {
      'enduser.id': 'n-1',
      'bucket.event': 'Added to cart',
      'bucket.attributes.sku': 'A-1',
      'bucket.attributes.quantity': 3,
      'bucket.attributes.price': 19.99,
      'bucket.attributes.gift': false,
      'bucket.attributes.tags': ['red', 'xl'],
      'bucket.attributes.big': 2 ** 40,
    },
  })
  .end(t0 + 11);
tracer
  .startSpan('click', { startTime: t0 + 20, attributes: { 'bucket.event': 'Anonymous click' } })
  .end(t0 + 21);
tracer.startSpan('GET /health', { startTime: t0 + 30 }).end(t0 + 31);

provider
  .forceFlush()
  .then(() => provider.shutdown())
  .then(() => console.log('node service flushed'))
  .catch((err) => {
    console.log(`node service failed: ${err}`);
    process.exitCode = 1;
  });
