// A Node.js service that sends event spans over OTLP/HTTP (protobuf) with the OpenTelemetry JS
// SDK, all defaults: only the endpoint is set (timeout, retries and the batch processor are the
// SDK's own). Run by tests/test_bridge_durable.py: node burst.js BASE_URL USER COUNT
'use strict';

const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');

const [baseUrl, user, count] = process.argv.slice(2);
const exporter = new OTLPTraceExporter({ url: `${baseUrl}/v1/traces` });
const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] });
const tracer = provider.getTracer('node-burst');

for (let index = 0; index < Number(count); index++) {
  tracer
    .startSpan('event', { attributes: { 'enduser.id': user, 'bucket.event': `${user} event ${index}` } })
    .end();
}

provider
  .forceFlush()
  .then(() => provider.shutdown())
  .then(() => console.log(`node burst of ${count} flushed`))
  .catch((err) => {
    console.log(`node burst failed: ${err}`);
    process.exitCode = 1;
  });
